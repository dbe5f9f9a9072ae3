"""Instance-segmentation evaluation time on a full-size synthetic room (clustering + metrics), as JSON.

A room of N points (default 250k, 500k, 1M: S3DIS rooms hold up to ~1M) is built from
box-shaped instances whose points lie on their surfaces (1 cm spacing at 1M points), with
13 classes, shifted towards their centres with noise as a trained offset head would do, and
semantic probabilities that are right 90 % of the time. The time of ``cluster_instances``
(radius ``--radius``, ``--min-points``) and of ``InstanceEvaluator`` is measured per size and the
scaling exponent is the slope of log(time) against log(N) (1 = linear, 2 = quadratic).

    python bench/insseg_eval.py [--sizes 250000,500000,1000000] [--radius 0.03]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
from tqdm import tqdm

from t4p.data.classes import class_list
from t4p.models.instance import cluster_instances
from t4p.tasks.instance_metrics import InstanceEvaluator, Proposals


def synthetic_room(n: int, rng: np.random.Generator, n_inst: int = 60, k: int = 13):
    """(xyz (n, 3), shifted (n, 3), prob (n, k), labels (n,), instances (n,)) for a 10 m x 8 m x 3 m room."""
    centres = rng.uniform([0.5, 0.5, 0.3], [9.5, 7.5, 2.7], (n_inst, 3))
    half = rng.uniform(0.2, 0.8, (n_inst, 3))
    inst = rng.integers(0, n_inst, n)  # (n,)
    # a point on the surface of its box: random point, one coordinate pushed to a face
    local = rng.uniform(-1, 1, (n, 3))
    axis = rng.integers(0, 3, n)
    local[np.arange(n), axis] = np.sign(local[np.arange(n), axis])
    xyz = centres[inst] + local * half[inst]
    shifted = centres[inst] + rng.normal(0, 0.01, (n, 3)) + 0.1 * (xyz - centres[inst])  # offsets 90 % right
    cls = rng.integers(0, k, n_inst)
    labels = cls[inst]
    logits = rng.normal(0, 1, (n, k))
    right = rng.random(n) < 0.9
    logits[np.flatnonzero(right), labels[right]] += 4.0
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    return xyz, shifted.astype(np.float32), prob.astype(np.float32), labels, inst


def time_one(n: int, radius: float, min_points: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    _xyz, shifted, prob, labels, inst = synthetic_room(n, rng)
    t0 = time.perf_counter()
    cl = cluster_instances(shifted, prob, radius, min_points)
    t1 = time.perf_counter()
    ev = InstanceEvaluator(class_list("s3dis13").names)
    ev.add_scene(labels, inst, Proposals.from_point_ids(cl.ids, cl.labels, cl.scores))
    scores = ev.compute()
    t2 = time.perf_counter()
    return {"points": n, "cluster_s": t1 - t0, "metrics_s": t2 - t1, "total_s": t2 - t0,
            "proposals": int(len(cl.labels)), "map50": scores["map50"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="250000,500000,1000000")
    ap.add_argument("--radius", type=float, default=0.03)
    ap.add_argument("--min-points", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = [time_one(n, args.radius, args.min_points, args.seed) for n in tqdm(sizes, desc="room sizes")]
    ns = np.log([r["points"] for r in rows])
    slope = float(np.polyfit(ns, np.log([r["total_s"] for r in rows]), 1)[0]) if len(rows) > 1 else float("nan")
    out = {
        "bench": "insseg_eval",
        "machine": platform.processor() or platform.machine(),
        "radius": args.radius,
        "min_points": args.min_points,
        "rows": rows,
        "scaling_exponent": slope,
        "note": "time = cluster_instances + InstanceEvaluator on one room; exponent = d log(time) / d log(N)",
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
