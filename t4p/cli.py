"""The `t4p` command: config, data, pretrain, finetune, evaluate, predict."""

from __future__ import annotations

import argparse
import importlib
import sys

from t4p.config import epochs_resolved, to_json
from t4p.errors import add_debug_flag, run_command
from t4p.recipes import RECIPES, get_recipe

# Each module defines `register(subparsers)` adding its subcommands; a subcommand's
# handler is stored as `func` and returns an exit code.
COMMAND_MODULES = ("t4p.commands.data", "t4p.commands.train")


def _config_show(args: argparse.Namespace) -> int:
    cfg = get_recipe(args.recipe, args.overrides)
    if not epochs_resolved(cfg):
        from t4p.data.datasets import resolve_schedule  # torch: only when a schedule is in epochs

        cfg = resolve_schedule(cfg, prepare=False)  # reads a prepared cache of data.root; never prepares
    print(to_json(cfg, flat=args.flat))
    if not epochs_resolved(cfg):
        print(f"t4p: train.epochs={cfg.train.epochs}: train.max_steps is derived at run time from the prepared "
              "training split (give data.root of prepared data to see it here)", file=sys.stderr)
    return 0


def _register_config(subparsers) -> None:
    p = subparsers.add_parser("config", help="show resolved configs")
    sub = p.add_subparsers(dest="config_cmd", required=True)
    show = sub.add_parser("show", help="print a recipe's resolved config as JSON")
    show.add_argument("recipe", help="one of: " + ", ".join(RECIPES))
    show.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. optim.lr=0.05")
    show.add_argument("--flat", action="store_true", help="print dotted keys instead of nested sections")
    show.set_defaults(func=_config_show)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t4p", description="Text4Point pre-training and fine-tuning")
    add_debug_flag(parser)
    subparsers = parser.add_subparsers(dest="command", required=True)
    _register_config(subparsers)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; a user mistake is one line ``t4p: error: ...`` and exit code 2 (``t4p.errors``)."""
    return run_command(build_parser(), lambda args: args.func(args), argv)


if __name__ == "__main__":
    sys.exit(main())
