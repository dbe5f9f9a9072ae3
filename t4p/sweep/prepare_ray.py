"""Data preparation as Ray tasks across a cluster (``t4p data prepare ... --ray``).

``t4p data prepare --ray`` passes ``run_ray_tasks`` to ``t4p.data.prepare.prepare`` as its
executor, so the data package never imports Ray or the sweep layer. Each unit (a scene or a
room) is one task; results stream back as they finish and the caller records them in the
manifest. Sources and outputs must be on storage every node sees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import ray


def run_ray_tasks(
    fn: Callable[..., dict], jobs: list[tuple], num_cpus: float = 1.0
) -> Iterator[tuple[str, dict]]:
    """Run ``fn(*job)`` for every job as a Ray task; yield (unit, result) as tasks finish.

    ``job[2]`` is the unit name (see ``t4p.data.prepare.prepare_unit``). Starts a local Ray
    instance if none is connected (``ray.init(address="auto")`` first, to join a cluster).
    """
    if not jobs:
        return
    if not ray.is_initialized():
        try:
            ray.init(address="auto", ignore_reinit_error=True, include_dashboard=False)
        except ConnectionError:
            ray.init(ignore_reinit_error=True, include_dashboard=False)
    task = ray.remote(num_cpus=num_cpus, max_retries=2)(fn)
    pending = {task.remote(*job): job[2] for job in jobs}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            unit = pending.pop(ref)
            yield unit, ray.get(ref)
