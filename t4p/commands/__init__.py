"""The `t4p` subcommands (the command-line layer, above `t4p.sweep`): `data` and `pretrain|finetune|evaluate|predict`.

Each module defines `register(subparsers)`; `t4p.cli` builds the parser from them.
"""
