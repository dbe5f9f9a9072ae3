"""The Text Querying Module (Sec. 3.3, Eq. 5-11).

3D encoder points query the text embeddings by cross-attention (3D = query, text = key/value);
the 3D-queried text feature is reduced back to the encoder width and added to the encoder
feature with two learnable scalars: h_aggr = alpha * h3D + beta * FC_reduce(h_text).

Not stated by the paper (config fields): the number of heads (default 1), the MLP width
(default 4x), the norm inside Eq. 9 (BatchNorm, the same "Norm" as Eq. 5) and the initial
alpha/beta (default 1 and 0, so a randomly initialised TQM starts as the identity on h3D).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class TextQueryingModule(nn.Module):
    """Eq. 5-11: ``forward(h3d (N, d'), h3d_hat (N, d), text (K, d)) -> h_aggr (N, d')``."""

    def __init__(
        self,
        dim: int,
        out_dim: int,
        heads: int = 1,
        mlp_ratio: float = 4.0,
        alpha_init: float = 1.0,
        beta_init: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"model.tqm_heads={heads}: must divide the CLIP embedding width {dim}")
        self.dim, self.heads = dim, heads
        self.norm_3d = nn.BatchNorm1d(dim)  # Eq. 5
        self.norm_text = nn.BatchNorm1d(dim)  # Eq. 5
        self.w_q = nn.Linear(dim, dim, bias=False)  # Eq. 6
        self.w_k = nn.Linear(dim, dim, bias=False)
        self.w_v = nn.Linear(dim, dim, bias=False)
        self.w_o = nn.Linear(dim, dim)  # Eq. 8
        hidden = int(round(dim * mlp_ratio))
        self.mlp_norm = nn.BatchNorm1d(dim)  # Eq. 9
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.fc_reduce = nn.Linear(dim, out_dim)  # Eq. 10
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))  # Eq. 11
        self.beta = nn.Parameter(torch.tensor(float(beta_init)))

    def query_text(self, h3d_hat: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Eq. 5-9: the 3D-queried text feature h_text, (N, d)."""
        n, k, hd = h3d_hat.shape[0], text.shape[0], self.dim // self.heads
        x = self.norm_3d(h3d_hat)  # (N, d)
        t = self.norm_text(text)  # (K, d)
        q = self.w_q(x).view(n, self.heads, hd).transpose(0, 1)  # (H, N, d/H)
        key = self.w_k(t).view(k, self.heads, hd).transpose(0, 1)  # (H, K, d/H)
        v = self.w_v(t).view(k, self.heads, hd).transpose(0, 1)  # (H, K, d/H)
        attn = torch.softmax(q @ key.transpose(1, 2) / math.sqrt(hd), dim=-1)  # (H, N, K), Eq. 7
        out = (attn @ v).transpose(0, 1).reshape(n, self.dim)  # (N, d)
        h_attn = self.w_o(out)  # Eq. 8
        return self.mlp(self.mlp_norm(h_attn))  # (N, d), Eq. 9

    def forward(self, h3d: torch.Tensor, h3d_hat: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        h_text = self.fc_reduce(self.query_text(h3d_hat, text))  # (N, d'), Eq. 10
        return self.alpha * h3d + self.beta * h_text  # (N, d'), Eq. 11
