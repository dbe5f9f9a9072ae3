"""Every entry point's ``--help``: fast (no torch, no Ray before argument parsing) and with an example.

``t4p --help`` and each subcommand's help run in one fresh interpreter; after each one the test lists
which heavy packages it imported (none may be: they load after parsing, docs/architecture.md). The
sweep scripts' helps must show an example too. Printed commands (the ``mlflow ui`` hint) must work
as shown, without the virtual environment activated.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from t4p.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "ray", "mlflow", "open_clip")

# One interpreter: for each argv, main(argv) prints its help (SystemExit 0); record the help text
# and the heavy packages that are in sys.modules afterwards.
_PROBE = """
import contextlib, io, json, sys
from t4p.cli import main
HEAVY = json.loads(sys.argv[2])
out = {}
for argv in json.loads(sys.argv[1]):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            main(argv)
        except SystemExit:
            pass
    out[" ".join(argv)] = {"help": buf.getvalue(), "heavy": [m for m in HEAVY if m in sys.modules]}
print(json.dumps(out))
"""


def _subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every (sub)command path of the parser: (), ("config",), ("config", "show"), ..."""
    found = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _subcommands(sub, (*prefix, name))
    return found


def test_subcommand_list_is_complete():
    names = {" ".join(p) for p in _subcommands(build_parser())}
    assert {"", "config show", "data synth", "data prepare", "data inspect", "pretrain", "finetune", "evaluate",
            "predict"} <= names


def test_every_t4p_help_has_an_example_and_imports_nothing_heavy():
    argvs = [[*path, "--help"] for path in _subcommands(build_parser())]
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argvs), json.dumps(HEAVY)], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) == len(argvs)
    for argv, res in results.items():
        assert res["heavy"] == [], f"`t4p {argv}` imported {res['heavy']} before parsing"
        assert "usage:" in res["help"], argv
        assert "example" in res["help"].lower(), f"`t4p {argv}` shows no example:\n{res['help']}"


@pytest.mark.parametrize("script", ["ablation.py", "search.py", "report.py"])
def test_every_sweep_script_help_has_an_example(script):
    proc = subprocess.run([sys.executable, str(REPO / "sweeps" / script), "--help"], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "example" in proc.stdout.lower(), proc.stdout
    assert f"python sweeps/{script}" in proc.stdout


def test_mlflow_ui_hint_names_the_venvs_mlflow():
    """The printed command works without the venv activated: mlflow from this interpreter's bin folder."""
    from t4p.errors import command_path
    from t4p.sweep.cli import mlflow_ui_hint

    path = command_path("mlflow")
    assert Path(path).is_absolute() and Path(path).parent == Path(sys.executable).parent
    assert Path(path).is_file()
    hint = mlflow_ui_hint("sqlite:////tmp/x/mlflow.db")
    assert hint == f"open the runs: {path} ui --backend-store-uri sqlite:////tmp/x/mlflow.db --host 127.0.0.1"
    assert command_path("no-such-command-t4p") == "no-such-command-t4p"


@pytest.mark.parametrize("script", ["ablation.py", "search.py"])
def test_sweep_scripts_print_the_hint_of_t4p_sweep_cli(script):
    """Both scripts print ``mlflow_ui_hint`` (tested above), not a command of their own."""
    text = (REPO / "sweeps" / script).read_text()
    assert "mlflow_ui_hint(" in text and "mlflow ui" not in text


def test_the_prepare_hint_of_a_stale_cache_names_the_venvs_t4p():
    """Raised inside a sweep too (``python sweeps/ablation.py``), where ``t4p`` need not be on PATH."""
    from t4p.data.prepare import stale_cache_error
    from t4p.errors import command_path

    assert Path(command_path("t4p")).parent == Path(sys.executable).parent
    message = str(stale_cache_error("s3dis-raw", "raw/s3dis", "prepared/s3dis", "stale"))
    assert f"`{command_path('t4p')} data prepare s3dis-raw raw/s3dis prepared/s3dis`" in message
