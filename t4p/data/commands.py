"""`t4p` subcommands of this package (filled in by its issue)."""

from __future__ import annotations


def register(subparsers) -> None:
    """Add this package's subcommands to the `t4p` parser."""
