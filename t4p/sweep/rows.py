"""Ablation grids: YAML files of named rows, each a set of dotted overrides (the paper's grid is one of them).

A row says how its fine-tuning differs from the fine-tuning recipe (``s3dis_semseg`` or a smoke
recipe) and, when it starts from a pre-trained model, how that pre-training differs from the
pre-training recipe (``pretrain_scannet``). Rows whose ``pretrain`` overrides are equal share one
pre-training checkpoint per seed. The file format is documented at the top of the paper's grid,
``t4p/sweep/grids/paper.yaml`` (Tables 5, 6 and App. C: T5-3, T5-4 and T5-5 share one pre-training;
T6 and C each have their own). It ships inside the package, so an installed t4p finds it;
``sweeps/grids/paper.yaml`` links to it beside the users' own grids.

``load_grid(path)`` reads and checks a grid file (``""``: the paper's) and returns its rows by name,
in file order; ``ABLATION_ROWS`` is the paper grid, loaded once. A row's optional ``paper`` names the
row id of ``t4p.paper`` whose numbers the report shows beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from t4p import paper
from t4p.config import Config, ConfigError, set_value

PAPER_GRID = Path(__file__).resolve().parent / "grids" / "paper.yaml"
GRID_KEYS = ("description", "rows")
ROW_FIELDS = ("name", "description", "finetune", "pretrain", "paper")


@dataclass(frozen=True)
class RowSpec:
    """One row of an ablation grid."""

    name: str
    description: str
    finetune: tuple[str, ...]  # dotted overrides applied to the fine-tuning recipe
    pretrain: tuple[str, ...] | None  # overrides of the pre-training recipe; None = from scratch
    paper: str | None = None  # row id of t4p.paper's tables whose numbers the report shows; None = n/a

    @property
    def needs_pretrain(self) -> bool:
        return self.pretrain is not None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _overrides(value: Any, where: str) -> tuple[str, ...]:
    """A row's ``finetune`` / ``pretrain`` list, each item checked as a config override (key and value type)."""
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of KEY=VALUE overrides, got {value!r}")
    probe = Config()
    for item in value:
        if not isinstance(item, str):
            raise ConfigError(f"{where}: override {item!r} is not a string (write KEY=VALUE, e.g. model.tqm=false)")
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"{where}: override {item!r}: expected KEY=VALUE, e.g. optim.lr=0.05")
        try:
            set_value(probe, key.strip(), text.strip())  # the config's own check: unknown key (closest match), type
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
    return tuple(value)


def _row(data: Any, index: int) -> RowSpec:
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
        raise ConfigError(f"row {index}: expected a name (a mapping with name: ..., finetune: [...])")
    name = data["name"]
    where = f"row {name!r}"
    unknown = [k for k in data if k not in ROW_FIELDS]
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r} (expected some of {', '.join(ROW_FIELDS)})")
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise ConfigError(f"{where}: description: expected one line of text, got {description!r}")
    ref = data.get("paper")
    if ref is not None and ref not in paper.ABLATION:
        raise ConfigError(f"{where}: paper: {ref!r} is not a row of the paper's tables "
                          f"(expected one of {', '.join(paper.ABLATION)}, or leave it out)")
    pretrain = data.get("pretrain")
    return RowSpec(
        name=name,
        description=description,
        finetune=_overrides(data.get("finetune", []), f"{where}: finetune"),
        pretrain=None if pretrain is None else _overrides(pretrain, f"{where}: pretrain"),
        paper=ref,
    )


def grid_from_data(data: Any) -> dict[str, RowSpec]:
    """The rows of a parsed grid (``{"rows": [...]}``) by name, in order; ``ConfigError`` names what is wrong."""
    if not isinstance(data, dict) or "rows" not in data:
        raise ConfigError("expected a mapping with 'rows' (a list of rows) and optionally 'description'")
    unknown = [k for k in data if k not in GRID_KEYS]
    if unknown:
        raise ConfigError(f"unknown top-level key {unknown[0]!r} (expected {', '.join(GRID_KEYS)})")
    if not isinstance(data["rows"], list):
        raise ConfigError(f"rows: expected a list of rows (- name: ...), got {type(data['rows']).__name__}")
    if not data["rows"]:
        raise ConfigError("rows: expected at least one row")
    rows: dict[str, RowSpec] = {}
    for index, item in enumerate(data["rows"], 1):
        row = _row(item, index)
        if row.name in rows:
            raise ConfigError(f"duplicate row name {row.name!r} (rows {list(rows).index(row.name) + 1} and {index})")
        rows[row.name] = row
    return rows


def grid_to_data(grid: Mapping[str, RowSpec]) -> dict:
    """The inverse of ``grid_from_data`` (JSON- and YAML-ready): how a sweep's state file keeps its grid."""
    return {"rows": [{"name": r.name, "description": r.description, "finetune": list(r.finetune),
                      "pretrain": None if r.pretrain is None else list(r.pretrain), "paper": r.paper}
                     for r in grid.values()]}


def load_grid(path: str | Path = "") -> dict[str, RowSpec]:
    """The rows of the grid file ``path`` (``""``: the paper's) by name, in file order.

    Every problem is a ``ConfigError`` (one line, exit code 2 in the scripts) that starts with
    ``grid <path>:`` and names the row and field: a missing file, invalid YAML, an unknown top-level key
    or row field, a duplicate row name or key, an override that is not a ``KEY=VALUE`` string or whose
    key / value the config rejects, a ``paper`` reference to no row of the paper's tables.
    """
    path = Path(path) if str(path) else PAPER_GRID
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"grid {path}: no such file") from None
    except OSError as err:
        raise ConfigError(f"grid {path}: cannot read it ({err.strerror})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
        return grid_from_data(data)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"grid {path}: not valid YAML{at}: {getattr(err, 'problem', None) or err}") from None
    except ConfigError as err:
        raise ConfigError(f"grid {path}: {err}") from None


# The paper's grid (Tables 5/6 + App. C). A sweep's own grid comes from ``sweep.grid`` (``load_grid``).
ABLATION_ROWS: dict[str, RowSpec] = load_grid(PAPER_GRID)
