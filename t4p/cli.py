"""The `t4p` command: config, data, pretrain, finetune, evaluate, predict."""

from __future__ import annotations

import argparse
import importlib
import sys

from t4p.commands import add_config_args, config_from_args, examples
from t4p.config import epochs_resolved, to_json
from t4p.errors import add_debug_flag, run_command

# Each module defines `register(subparsers)` adding its subcommands; a subcommand's
# handler is stored as `func` and returns an exit code.
COMMAND_MODULES = ("t4p.commands.data", "t4p.commands.train")


def _config_show(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if not epochs_resolved(cfg):
        from t4p.data.datasets import resolve_schedule  # torch: only when a schedule is in epochs

        cfg = resolve_schedule(cfg, prepare=False)  # reads a prepared cache of data.root; never prepares
    print(to_json(cfg, flat=args.flat))
    if not epochs_resolved(cfg):
        print(f"t4p: train.epochs={cfg.train.epochs}: train.max_steps is derived at run time from the prepared "
              "training split (give data.root of prepared data to see it here)", file=sys.stderr)
    return 0


def _register_config(subparsers) -> None:
    show_examples = examples("t4p config show smoke_semseg optim.lr=0.05 --flat",
                             "t4p config show --config runs/ft/config.json train.seed=1   # a logged config, changed")
    p = subparsers.add_parser("config", help="show resolved configs", **show_examples)
    sub = p.add_subparsers(dest="config_cmd", required=True)
    text = "print a recipe's (or a logged config's) resolved config as JSON"
    show = sub.add_parser("show", help=text, description=text, **show_examples)
    add_config_args(show)
    show.add_argument("--flat", action="store_true", help="print dotted keys instead of nested sections")
    show.set_defaults(func=_config_show)


class _Parser(argparse.ArgumentParser):
    """``KEY=VALUE`` overrides may also follow options (``t4p finetune RECIPE --config FILE optim.lr=0.05``):
    argparse fills a ``nargs="*"`` positional once, before the options, and calls later ones unrecognised."""

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        ns, extra = self.parse_known_args(args, namespace)
        if hasattr(ns, "overrides"):
            late = [x for x in extra if "=" in x and not x.startswith("-")]
            ns.overrides = [*ns.overrides, *late]
            extra = [x for x in extra if x not in late]
        if extra:
            self.error(f"unrecognized arguments: {' '.join(extra)}")
        return ns


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="t4p", description="Text4Point pre-training and fine-tuning (`t4p COMMAND --help` for each command)",
        **examples("t4p data synth data/synth --scenes 6",
                   "t4p pretrain smoke_pretrain train.out_dir=runs/pre",
                   "t4p finetune smoke_semseg finetune.init=runs/pre/checkpoint/checkpoint.pt train.out_dir=runs/ft",
                   "t4p finetune --config runs/ft optim.lr=0.05 train.out_dir=runs/ft-lr   # replay a run, changed",
                   "t4p predict runs/ft/checkpoint/checkpoint.pt room.ply --out pred/room.npy",
                   "python sweeps/ablation.py --demo                      # the ablation grid (Ray + MLflow)"),
    )
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
