"""One vocabulary: the names the config accepts are exactly the ones the tables behind them hold.

A new task, format or benchmark is added to a table; these tests name what else must agree
(the config's ``Literal`` types, which also give the CLI its error messages).
"""

from __future__ import annotations

from typing import get_args, get_type_hints

import pytest

from t4p.config import TASK_TRAITS, DataConfig, SweepConfig, Task
from t4p.data.classes import class_list
from t4p.data.formats import FORMATS
from t4p.sweep.benchmarks import BENCHMARKS
from t4p.tasks import get_task


def test_every_task_name_has_traits_and_a_task_object():
    names = set(get_args(Task))
    assert names == set(TASK_TRAITS) == {"pretrain", "semseg", "insseg", "det"}
    for name in names:
        task = get_task(name)
        assert task.name == name
        assert task.fine_tuning == TASK_TRAITS[name].fine_tuning
    assert [n for n, t in TASK_TRAITS.items() if not t.fine_tuning] == ["pretrain"]  # self-supervised
    assert [n for n, t in TASK_TRAITS.items() if t.boxes] == ["det"]


def test_dataset_names_are_the_format_table_plus_synthetic():
    accepted = set(get_args(get_type_hints(DataConfig)["dataset"]))
    assert accepted == set(FORMATS) | {"synthetic"}
    for fmt in FORMATS.values():
        assert set(fmt.tasks) <= set(TASK_TRAITS), fmt.name


def test_class_lists_and_benchmarks_agree_with_the_config():
    for name in get_args(get_type_hints(DataConfig)["classes"]):
        assert class_list(name).names, name
    for spec in BENCHMARKS.values():
        assert spec.train_task in TASK_TRAITS and TASK_TRAITS[spec.train_task].fine_tuning, spec.name
        assert spec.classes in get_args(get_type_hints(DataConfig)["classes"]), spec.name
    benchmark_type = get_type_hints(SweepConfig)["benchmark"]
    if get_args(benchmark_type):  # a Literal: it must list exactly the table's names
        assert set(get_args(benchmark_type)) == set(BENCHMARKS)


@pytest.mark.parametrize("name", ["segmentation", ""])
def test_an_unknown_task_is_a_config_error(name):
    from t4p.config import ConfigError

    with pytest.raises(ConfigError, match="expected one of pretrain, semseg, insseg, det"):
        get_task(name)
