"""Pure-PyTorch sparse convolution backend (no compiled extension; CPU and CUDA).

Kernel maps come from coordinate hashing (int64 keys; see CoordTable: a dense grid or binary search).
A kernel map is a neighbour table `nbr (N_out, K)` (int32) holding the input row for each output row
and kernel offset (-1 where absent). Convolution groups output rows by their neighbour pattern (which
offsets are present) and runs one gather + GEMM per group over only the present offsets (a sparse
im2col, chunked to bound memory): wide GEMMs near peak throughput with no wasted multiply by empty
neighbours. Kernel maps are cached on the coordinate set object, so they live exactly as long as
the batch's coordinates (one forward/backward pass) and are never shared across batches.

Backward of a submanifold conv (odd kernel, stride 1) uses the map's symmetry, nbr[i,k] = j <=>
nbr[j,K-1-k] = i: one im2col of grad_out per chunk feeds both the input gradient (a forward with the
flipped transposed kernel) and the weight gradient (those columns against the input's own rows), so
no scatter-add and no second gather. Other convs scatter their input gradient with index_add_.

On CPU the im2col chunks go into per-thread scratch buffers reused across calls (fresh large
tensors page-fault on first touch) and the GEMMs run through oneDNN's matmul (faster than MKL's
sgemm at these shapes here); everything stays float32.

Offsets are enumerated x fastest, then y, then z (as MinkowskiEngine's hyper-cube region);
odd kernels are centred, even kernels span [0, k-1] (x tensor stride).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import torch
import torch.nn as nn

from t4p.sparse.tensor import CoordTable, ReLU, SparseTensor, check_coords_feats

STATS = {"kernel_maps_built": 0}  # counted for tests of the per-coordinate-set cache
GATHER_BUDGET = 1 << 22  # elements of one im2col chunk (16 MiB in float32)
N_CANDIDATES = 48  # most frequent neighbour patterns used as im2col groups
MIN_GROUP_ROWS = 256  # rarer patterns are not candidates (a group's kernel gather must pay off)
MAX_PAD_FACTOR = 1.75  # a row joins a group reading at most 1.75x its own neighbours
# A convolution of at most this many multiply-adds when computed densely (rows x offsets x C_in x C_out)
# runs as one im2col group over all offsets: at that size the pattern groups' per-group overhead costs
# more than the padding's extra FLOPs (measured: the smoke pre-training step 0.29 s -> 0.10 s, 1 thread).
DENSE_MACS_MAX = 1 << 26


def kernel_offsets(kernel_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(K, 3) int64 offsets in units of the input tensor stride, x fastest."""
    r = torch.arange(kernel_size, device=device)
    if kernel_size % 2 == 1:
        r = r - (kernel_size - 1) // 2
    z, y, x = torch.meshgrid(r, r, r, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1), z.reshape(-1)], 1)  # (K, 3)


class CoordSet:
    """One coordinate set (rows of a sparse tensor at one stride) with its cached kernel maps."""

    def __init__(self, coords: torch.Tensor, stride: int, finer: CoordSet | None = None):
        self.coords = coords  # (N, 4) int32
        self.stride = stride
        self.finer = finer  # the coordinate set this one was downsampled from (transposed conv target)
        self.coarser: dict[int, tuple[CoordSet, torch.Tensor]] = {}  # factor -> (set, inverse map)
        self.plans: dict[tuple, ConvPlan] = {}
        self._table: CoordTable | None = None

    def __len__(self) -> int:
        return self.coords.shape[0]

    def table(self, query: torch.Tensor | None = None, reach: int = 0) -> CoordTable:
        """The hash table, grown (rebuilt) when `query` +- `reach` would leave its box."""
        if self._table is None or (query is not None and not self._table.covers(query, reach)):
            margin = self.stride
            if query is not None:
                lo, hi = query[:, 1:].min(0).values, query[:, 1:].max(0).values
                c_lo, c_hi = self.coords[:, 1:].min(0).values, self.coords[:, 1:].max(0).values
                margin = max(margin, int((c_lo - lo).max()) + reach, int((hi - c_hi).max()) + reach)
            self._table = CoordTable(self.coords, margin)
        return self._table

    def downsample(self, factor: int) -> tuple[CoordSet, torch.Tensor]:
        """Coordinates floored to multiples of stride*factor (unique, sorted), and each row's coarse row."""
        if factor not in self.coarser:
            s = self.stride * factor
            q = self.coords.long().clone()
            q[:, 1:] = torch.div(q[:, 1:], s, rounding_mode="floor") * s  # (N, 4)
            keys = CoordTable(q).pack(q)
            uniq, inverse = torch.unique(keys, sorted=True, return_inverse=True)
            coarse = torch.empty(uniq.numel(), 4, dtype=torch.int32, device=q.device)
            coarse[inverse] = q.to(torch.int32)  # (M, 4)
            self.coarser[factor] = (CoordSet(coarse, s, finer=self), inverse)
        return self.coarser[factor]


def neighbour_table(
    out_set: CoordSet, in_set: CoordSet, kernel_size: int, sign: int, offset_unit: int
) -> torch.Tensor:
    """nbr (N_out, K): input row at out_coord + sign * offset_k * offset_unit, -1 if absent."""
    offsets = kernel_offsets(kernel_size, out_set.coords.device) * (sign * offset_unit)  # (K, 3)
    base = out_set.coords.long()  # (N_out, 4)
    table = in_set.table(base, int(offsets.abs().max()))
    return table.lookup_offsets(base, offsets)  # (N_out, K)


@dataclass
class Group:
    rows: torch.Tensor  # (n,) output rows
    offsets: torch.Tensor  # (m,) kernel offsets read by these rows
    idx: torch.Tensor  # (n, m) input rows; n_in (the zero pad row) where absent
    padded: bool  # whether idx refers to the pad row
    accumulate: bool  # rows shared with other groups (per-offset groups): add instead of copy
    first_offset: int  # offsets[0] as a python int (no device sync for single-offset groups)


def make_group(rows, offsets, idx, n_in: int, accumulate: bool = False) -> Group:
    missing = idx < 0
    padded = bool(missing.any())
    idx = torch.where(missing, n_in, idx) if padded else idx
    return Group(rows, offsets, idx, padded, accumulate, int(offsets[0]))


class ConvPlan:
    """Gather-GEMM schedule of one kernel map: output rows grouped by neighbour pattern, or one dense group."""

    def __init__(self, nbr: torch.Tensor, n_in: int, symmetric: bool):
        self.nbr = nbr  # (N_out, K) input row per output row and offset, -1 where absent
        self.n_out, self.kernel_volume = nbr.shape
        self.n_in = n_in
        self.symmetric = symmetric  # offset K-1-k is -offset k and in/out sets are equal (submanifold)
        self._schedules: dict[bool, list[Group]] = {}  # dense? -> groups, built on first use

    def groups(self, c_in: int, c_out: int) -> list[Group]:
        """The schedule for these channel counts: dense when small (DENSE_MACS_MAX) or a large kernel."""
        k = self.kernel_volume
        dense = k > 62 or self.n_out * k * c_in * c_out <= DENSE_MACS_MAX
        if dense not in self._schedules:
            self._schedules[dense] = dense_group(self.nbr, self.n_in) if dense else group_rows(self.nbr, self.n_in)
        return self._schedules[dense]

    def copy_only(self, groups: list[Group]) -> bool:
        """Every output row written exactly once (no per-offset accumulation): no zero fill needed."""
        return not any(g.accumulate for g in groups) and sum(g.rows.numel() for g in groups) == self.n_out


def dense_group(nbr: torch.Tensor, n_in: int) -> list[Group]:
    """All rows in one im2col group over every offset present anywhere (absent neighbours read the pad row)."""
    offsets = torch.nonzero((nbr >= 0).any(0)).reshape(-1)
    rows = torch.arange(nbr.shape[0], device=nbr.device)
    idx = nbr if offsets.numel() == nbr.shape[1] else nbr[:, offsets]  # (N_out, m)
    return [make_group(rows, offsets, idx, n_in)] if offsets.numel() else []


def pattern_words(present: torch.Tensor) -> torch.Tensor:
    """(N, K <= 62) bool -> (N,) int64 bit pattern of the offsets present in each row."""
    weights = torch.pow(2, torch.arange(present.shape[1], device=present.device, dtype=torch.long))
    return (present.long() * weights).sum(1)


def popcount(words: torch.Tensor) -> torch.Tensor:
    bits = torch.arange(62, device=words.device)
    return ((words[:, None] >> bits) & 1).sum(1)


def group_rows(nbr: torch.Tensor, n_in: int) -> list[Group]:
    """Schedule the output rows into im2col groups.

    Frequent exact neighbour patterns (>= MIN_GROUP_ROWS rows, at most N_CANDIDATES) become groups;
    each row joins the cheapest pattern covering it (reading the zero pad row for the neighbours it
    lacks) unless that costs more than MAX_PAD_FACTOR times its own neighbours. Remaining rows run
    per kernel offset (exact, ME-style thin GEMMs accumulated into the output).
    """
    present = nbr >= 0  # (N_out, K)
    k = nbr.shape[1]
    all_rows = torch.arange(nbr.shape[0], device=nbr.device)
    words = pattern_words(present)  # (N_out,)
    uniq, counts = torch.unique(words, return_counts=True)
    ranked = torch.argsort(counts, descending=True)[:N_CANDIDATES]
    union = pattern_words(present.any(0, keepdim=True))  # (1,) all offsets present anywhere
    candidates = torch.cat([uniq[ranked][counts[ranked] >= MIN_GROUP_ROWS], union])  # (G,)
    groups = []
    covers = (words[:, None] & ~candidates[None, :]) == 0  # (N_out, G)
    cost = torch.where(covers, popcount(candidates)[None, :], 1 << 20)
    best, choice = cost.min(1)  # (N_out,)
    accepted = best <= MAX_PAD_FACTOR * present.sum(1)
    choice = torch.where(accepted, choice, len(candidates))
    leftover = ~accepted
    order = torch.argsort(choice, stable=True)
    sizes = torch.bincount(choice, minlength=len(candidates) + 1).tolist()
    bits = torch.arange(k, device=nbr.device)
    start = 0
    for g, size in enumerate(sizes[:-1]):
        rows = order[start : start + size]
        start += size
        offsets = torch.nonzero((candidates[g] >> bits) & 1).reshape(-1)
        if size > 0 and offsets.numel() > 0:
            groups.append(make_group(rows, offsets, nbr[rows][:, offsets], n_in))
    rest = nbr[leftover]  # (n_rest, K)
    rest_rows = all_rows[leftover]
    for offset in torch.nonzero(present[leftover].any(0)).reshape(-1).tolist():
        sel = rest[:, offset] >= 0
        offsets = torch.tensor([offset], device=nbr.device)
        groups.append(make_group(rest_rows[sel], offsets, rest[sel][:, offset : offset + 1], n_in, True))
    return groups


def chunks(n_rows: int, width: int):
    step = max(256, GATHER_BUDGET // max(1, width))
    for start in range(0, n_rows, step):
        yield start, min(n_rows, start + step)


_SCRATCH = threading.local()  # per-thread CPU buffers, one per role (see scratch)


def scratch(role: str, rows: int, cols: int, like: torch.Tensor) -> torch.Tensor:
    """An uninitialised (rows, cols) buffer for `role`, reused across calls on CPU (grow-only).

    A fresh large CPU tensor is new memory from the OS, zero-filled page by page on first touch:
    measured here ~20 ms per 33 MB, more than the gather that fills it. Each role's buffer is used by
    one loop at a time and never escapes. On other devices the caching allocator already reuses memory.
    """
    if like.device.type != "cpu":
        return like.new_empty(rows, cols)
    bufs = _SCRATCH.__dict__.setdefault("bufs", {})
    buf = bufs.get((role, like.dtype))
    if buf is None or buf.numel() < rows * cols:
        buf = bufs[(role, like.dtype)] = like.new_empty(rows * cols)
    return buf[: rows * cols].view(rows, cols)


def pad_rows(x: torch.Tensor, needed: bool) -> torch.Tensor:
    """x (N, C) -> (N + 1, C) with a zero last row (the pad row absent neighbours read), in scratch."""
    if not needed:
        return x
    out = scratch("padded", x.shape[0] + 1, x.shape[1], x)
    out[:-1].copy_(x)
    out[-1].zero_()
    return out


def gather_rows(src: torch.Tensor, idx: torch.Tensor, width: int, role: str = "cols") -> torch.Tensor:
    """src[idx] (n, m) -> (n, m * C) in the `role` scratch buffer: the sparse im2col of one chunk."""
    out = scratch(role, idx.shape[0], width, src)
    torch.index_select(src, 0, idx.reshape(-1), out=out.view(-1, src.shape[1]))
    return out


def select_offsets(weight: torch.Tensor, group: Group) -> torch.Tensor:
    """weight[group.offsets] (m, C_in, C_out), without a copy where possible."""
    offsets = group.offsets
    if offsets.numel() == weight.shape[0]:
        return weight
    if offsets.numel() == 1:
        return weight[group.first_offset : group.first_offset + 1]
    return weight.index_select(0, offsets)


def linear_weight(weight: torch.Tensor) -> torch.Tensor:
    """(m, A, B) kernel slices -> (B, m*A) contiguous: `project`'s layout for cols (n, m*A) -> (n, B)."""
    return weight.permute(2, 0, 1).reshape(weight.shape[2], -1).contiguous()


ONEDNN_LINEAR = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None


def project(cols: torch.Tensor, w_lin: torch.Tensor) -> torch.Tensor:
    """cols (n, m*A) @ w_lin^T -> (n, B), float32 throughout.

    On CPU through oneDNN's matmul (the op behind torch's compiled linear layers): at these shapes
    (K ~ 2000, N ~ 100) it measured 57-62 GFLOP/s on one thread here against 40-50 for torch.mm (MKL).
    """
    if ONEDNN_LINEAR is not None and cols.device.type == "cpu" and cols.dtype == torch.float32:
        return ONEDNN_LINEAR(cols, w_lin, None, "none", [], "")
    return cols @ w_lin.t()


def group_chunks(g: Group, src: torch.Tensor):
    """(a, b, cols (b-a, m*C)) for each chunk of the group's rows: src's sparse im2col at g.idx[a:b]."""
    width = g.offsets.numel() * src.shape[1]
    for a, b in chunks(g.rows.numel(), width):
        yield a, b, gather_rows(src, g.idx[a:b], width)


def write_rows(out: torch.Tensor, g: Group, a: int, b: int, value: torch.Tensor) -> None:
    """out[g.rows[a:b]] = value, or += for per-offset groups (rows shared between groups)."""
    if g.accumulate:
        out.index_add_(0, g.rows[a:b], value)
    else:
        out.index_copy_(0, g.rows[a:b], value)


def add_offsets(grad_w: torch.Tensor, g: Group, value: torch.Tensor) -> None:
    """grad_w[g.offsets] += value (m, C_in, C_out)."""
    if value.shape[0] == grad_w.shape[0]:
        grad_w += value
    else:
        grad_w.index_add_(0, g.offsets, value)


def new_output(plan: ConvPlan, groups: list[Group], like: torch.Tensor, channels: int) -> torch.Tensor:
    """(N_out, channels) output of a schedule; zero-filled only where groups accumulate."""
    return like.new_empty(plan.n_out, channels) if plan.copy_only(groups) else like.new_zeros(plan.n_out, channels)


def plan_forward(plan: ConvPlan, feats: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """out[i] = sum_k feats[nbr[i, k]] @ weight[k] -> (N_out, C_out)."""
    c_in, c_out = weight.shape[1], weight.shape[2]
    groups = plan.groups(c_in, c_out)
    src = pad_rows(feats, any(g.padded for g in groups))
    out = new_output(plan, groups, feats, c_out)
    for g in groups:
        w = linear_weight(select_offsets(weight, g))  # (C_out, m*C_in)
        for a, b, cols in group_chunks(g, src):
            write_rows(out, g, a, b, project(cols, w))  # (n, C_out)
    return out


def symmetric_backward(plan: ConvPlan, feats: torch.Tensor, grad_out: torch.Tensor, weight: torch.Tensor):
    """(grad_in (N, C_in), grad_weight (K, C_in, C_out)) of a submanifold conv from one im2col of grad_out.

    With nbr[i,k] = j <=> nbr[j,K-1-k] = i, the same plan gathers grad_out for both gradients:
    grad_in[j] = sum_k grad_out[nbr[j,k]] @ weight[K-1-k]^T (a forward with the flipped transposed kernel)
    and grad_weight[K-1-k] = sum_j feats[j]^T grad_out[nbr[j,k]] (those columns against feats' own rows).
    """
    c_in, c_out = weight.shape[1], weight.shape[2]
    w_t = weight.flip(0).transpose(1, 2)  # (K, C_out, C_in)
    groups = plan.groups(c_out, c_in)
    src = pad_rows(grad_out, any(g.padded for g in groups))
    grad_in = new_output(plan, groups, grad_out, c_in)
    grad_w_flipped = feats.new_zeros(weight.shape)  # (K, C_in, C_out) at plan offset k = kernel offset K-1-k
    for g in groups:
        w = linear_weight(select_offsets(w_t, g))  # (C_in, m*C_out)
        acc = feats.new_zeros(w.shape[1], c_in)  # (m*C_out, C_in)
        for a, b, cols in group_chunks(g, src):
            write_rows(grad_in, g, a, b, project(cols, w))  # (n, C_in)
            acc.addmm_(cols.t(), gather_rows(feats, g.rows[a:b], c_in, "rows"))
        add_offsets(grad_w_flipped, g, acc.view(-1, c_out, c_in).transpose(1, 2))
    return grad_in, grad_w_flipped.flip(0)


def plan_input_grad(plan: ConvPlan, grad_out: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """grad_in[j] = sum_{i,k: nbr[i,k]=j} grad_out[i] @ weight[k]^T -> (N_in, C_in)."""
    c_in, c_out = weight.shape[1], weight.shape[2]
    grad_in = grad_out.new_zeros(plan.n_in + 1, c_in)
    for g in plan.groups(c_in, c_out):
        w = select_offsets(weight, g).reshape(-1, c_out)  # (m*C_in, C_out): project's layout for C_out -> m*C_in
        for a, b in chunks(g.rows.numel(), w.shape[0]):
            cols = project(gather_rows(grad_out, g.rows[a:b], c_out, "rows"), w)  # (n, m*C_in)
            grad_in.index_add_(0, g.idx[a:b].reshape(-1), cols.view(-1, c_in))
    return grad_in[: plan.n_in]


def plan_weight_grad(plan: ConvPlan, feats: torch.Tensor, grad_out: torch.Tensor, shape) -> torch.Tensor:
    """grad_weight[k] = sum_i feats[nbr[i,k]]^T grad_out[i] -> (K, C_in, C_out)."""
    c_in, c_out = shape[1], shape[2]
    groups = plan.groups(c_in, c_out)
    src = pad_rows(feats, any(g.padded for g in groups))
    grad_w = feats.new_zeros(shape)
    for g in groups:
        acc = feats.new_zeros(g.offsets.numel() * c_in, c_out)  # (m*C_in, C_out)
        for a, b, cols in group_chunks(g, src):
            acc.addmm_(cols.t(), gather_rows(grad_out, g.rows[a:b], c_out, "rows"))
        add_offsets(grad_w, g, acc.view(-1, c_in, c_out))
    return grad_w


class SparseConvFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, feats, weight, plan):
        ctx.save_for_backward(feats, weight)
        ctx.plan = plan
        return plan_forward(plan, feats, weight)

    @staticmethod
    def backward(ctx, grad_out):
        feats, weight = ctx.saved_tensors
        plan = ctx.plan
        grad_out = grad_out.contiguous()
        need_in, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if plan.symmetric and need_in:  # one gather of grad_out serves both gradients
            grad_in, grad_w = symmetric_backward(plan, feats, grad_out, weight)
            return grad_in, grad_w if need_w else None, None
        grad_in = plan_input_grad(plan, grad_out, weight) if need_in else None
        grad_w = plan_weight_grad(plan, feats, grad_out, weight.shape) if need_w else None
        return grad_in, grad_w, None


def conv_plan(x: SparseTensor, kernel_size: int, stride: int, transposed: bool) -> tuple[ConvPlan, CoordSet]:
    """The cached plan and output coordinate set of a (transposed) convolution of `x`."""
    cs: CoordSet = x.impl
    key = ("tconv" if transposed else "conv", kernel_size, stride)
    if transposed:
        out_set: CoordSet | None = cs
        for _ in range(int(round(math.log2(stride)))):
            out_set = out_set.finer if out_set is not None else None
        if stride & (stride - 1) or out_set is None or out_set.stride * stride != cs.stride:
            raise ValueError(
                f"transposed conv (stride {stride}) at tensor stride {cs.stride}: no finer coordinate set "
                f"to output onto (build the input through strided convs of the same batch)"
            )
    else:
        out_set = cs.downsample(stride)[0] if stride > 1 else cs
    if key not in cs.plans:
        if transposed:  # out f gets in o where f = o + offset_k * fine_stride
            nbr = neighbour_table(out_set, cs, kernel_size, sign=-1, offset_unit=out_set.stride)
        else:  # out o gets in c where c = o + offset_k * in_stride
            nbr = neighbour_table(out_set, cs, kernel_size, sign=1, offset_unit=cs.stride)
        symmetric = (not transposed) and stride == 1 and kernel_size % 2 == 1
        cs.plans[key] = ConvPlan(nbr, len(cs), symmetric)
        STATS["kernel_maps_built"] += 1
    return cs.plans[key], out_set


def init_kernel(kernel: torch.Tensor, fan: int) -> None:
    bound = 1.0 / math.sqrt(fan)
    nn.init.uniform_(kernel, -bound, bound)


class Conv(nn.Module):
    """Sparse convolution; parameter `kernel` (K, C_in, C_out) ((C_in, C_out) for K = 1), as ME's."""

    transposed = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, bias=False):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = kernel_size, stride
        volume = kernel_size**3
        shape = (volume, in_channels, out_channels) if volume > 1 else (in_channels, out_channels)
        self.kernel = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.zeros(1, out_channels)) if bias else None
        init_kernel(self.kernel, (out_channels if self.transposed else in_channels) * volume)

    def forward(self, x: SparseTensor) -> SparseTensor:
        if x.feats.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__}: expected {self.in_channels} channels, got {x.feats.shape[1]}")
        if self.kernel_size == 1 and self.stride == 1:
            out = x.feats @ self.kernel  # (N, C_out)
            out_set = x.impl
        else:
            plan, out_set = conv_plan(x, self.kernel_size, self.stride, self.transposed)
            weight = self.kernel.view(-1, self.in_channels, self.out_channels)
            out = SparseConvFunction.apply(x.feats.contiguous(), weight, plan)
        if self.bias is not None:
            out = out + self.bias
        return SparseTensor(out_set.coords, out, out_set.stride, x.backend, out_set)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"


class ConvTranspose(Conv):
    """Transposed sparse convolution onto the finer coordinate set the input came from."""

    transposed = True


class BatchNorm(nn.Module):
    """BatchNorm over rows; the `bn` submodule gives ME's parameter names (`bn.weight`, ...)."""

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.bn = nn.BatchNorm1d(channels, eps=eps, momentum=momentum)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.with_feats(self.bn(x.feats))


class TorchBackend:
    """Factory of tensors and modules of the pure-PyTorch backend."""

    name = "torch"
    Conv = Conv
    ConvTranspose = ConvTranspose
    BatchNorm = BatchNorm
    ReLU = ReLU

    def tensor(self, coords, feats, device: torch.device | str | None = None) -> SparseTensor:
        """Input tensor at stride 1 from (N, 4) integer coordinates and (N, C) features."""
        coords, feats = check_coords_feats(coords, feats)
        if device is not None:
            coords, feats = coords.to(device), feats.to(device)
        coords = coords.to(feats.device)
        cs = CoordSet(coords, 1)
        keys = cs.table().keys
        if (keys[1:] == keys[:-1]).any():
            raise ValueError("coords: duplicate coordinates (voxelize the points first)")
        return SparseTensor(coords, feats, 1, self, cs)

    def with_feats(self, x: SparseTensor, feats: torch.Tensor) -> SparseTensor:
        return SparseTensor(x.coords, feats, x.stride, self, x.impl)

    def cat(self, a: SparseTensor, b: SparseTensor) -> SparseTensor:
        """Channel concatenation of two tensors on the same coordinate set."""
        if a.impl is not b.impl:
            raise ValueError("cat: tensors are not on the same coordinate set")
        return a.with_feats(torch.cat([a.feats, b.feats], 1))
