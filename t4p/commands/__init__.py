"""The `t4p` subcommands (the command-line layer, above `t4p.sweep`): `data` and `pretrain|finetune|evaluate|predict`.

Each module defines `register(subparsers)`; `t4p.cli` builds the parser from them. The helpers here
are light (no torch): every parser is built before anything heavy is imported.
"""

from __future__ import annotations

import argparse

from t4p.config import Config
from t4p.recipes import RECIPES, get_config


def examples(*lines: str) -> dict:
    """``add_parser`` keyword arguments that end a command's help with example command lines, shown as written."""
    return {"epilog": "examples:\n" + "\n".join(f"  {line}" for line in lines),
            "formatter_class": argparse.RawDescriptionHelpFormatter}


def add_config_args(p: argparse.ArgumentParser) -> None:
    """``[RECIPE] [KEY=VALUE ...] [--config FILE]``: a recipe, a logged config, or both (``get_config``)."""
    p.add_argument("recipe", nargs="?", default=None, metavar="RECIPE",
                   help=f"one of: {', '.join(RECIPES)} (optional with --config)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. optim.lr=0.05")
    add_config_flag(p)


def add_config_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", default=None,
                   help="replay a logged config: a config.json (a run folder's, or the MLflow run's artifact) or "
                        "the run folder; its keys replace the recipe's (no recipe needed), KEY=VALUE go on top")


def split_names(items: list[str]) -> tuple[list[str], list[str]]:
    """Positional arguments -> (the leading ones without ``=``: recipe, checkpoint; the ``KEY=VALUE`` rest)."""
    n = next((i for i, item in enumerate(items) if "=" in item), len(items))
    return items[:n], items[n:]


def config_from_args(args: argparse.Namespace) -> Config:
    """``add_config_args``' config. ``t4p finetune --config runs/x/config.json optim.lr=0.05`` has no recipe:
    argparse puts the first override in ``args.recipe``, which is moved back to ``args.overrides`` here."""
    names, overrides = split_names([x for x in (args.recipe, *args.overrides) if x is not None])
    args.recipe, args.overrides = (names[0] if names else None), [*names[1:], *overrides]
    return get_config(args.recipe, args.config, args.overrides)
