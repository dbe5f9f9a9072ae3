"""Both cluster YAMLs validate offline against the schema shipped inside the installed Ray package."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]
YAMLS = [REPO / "cluster" / "ray_cluster.yaml", REPO / "cluster" / "ray_cluster.local.yaml"]


def _schema() -> dict:
    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_cluster_yaml_matches_rays_schema(path):
    cfg = yaml.safe_load(path.read_text())
    jsonschema.validate(cfg, _schema())  # the raw file, as written
    validate_config(prepare_config(copy.deepcopy(cfg)))  # what `ray up` checks after filling defaults


def test_top_level_link_points_at_the_cloud_config():
    link = REPO / "ray_cluster.yaml"
    assert link.is_symlink() and link.resolve() == YAMLS[0].resolve()


@pytest.mark.parametrize(
    "breakage",
    [
        lambda c: c.update(min_workers=1),  # top-level min_workers is rejected by the schema
        lambda c: c["provider"].pop("type"),
        lambda c: c.update(max_workers="many"),
    ],
)
def test_a_broken_copy_fails_validation(breakage):
    cfg = yaml.safe_load(YAMLS[0].read_text())
    breakage(cfg)
    with pytest.raises((jsonschema.ValidationError, ValueError, KeyError)):
        jsonschema.validate(cfg, _schema())
        validate_config(prepare_config(copy.deepcopy(cfg)))


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_nothing_is_exposed_beyond_the_private_network(path):
    text = path.read_text()
    assert "--dashboard-host=127.0.0.1" in text
    assert "0.0.0.0" not in text
    assert "node_setup.sh head" in text and "node_setup.sh worker" in text
