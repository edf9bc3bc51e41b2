"""``regionlab eval ... --ray [ADDRESS]``: the same evaluation on Ray Data.

The groups still to do (images, or ReCLIP lines) become a Ray dataset; ``map_batches`` sends
them to a pool of actors, each of which rebuilds the task from its spec and loads the models
once (``EvalTask.setup``), then runs ``run_group`` exactly as the local loop does. Each
actor asks for one GPU when the cluster has GPUs, else one CPU. Rows stream back to this
process as they finish and are appended to ``items.jsonl`` here, so a killed Ray run resumes
like a local one, and the metrics come from the same rows, so they equal the local run's.

Ray is an optional extra: ``pip install -e ".[scale]"``. ``ADDRESS`` is a cluster address
(``ray://host:10001``, ``auto``); without one a local Ray instance is started with
``REGIONLAB_RAY_CPUS`` CPUs (default: all).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from ..errors import InputError


class _Worker:
    """A Ray Data actor: one task (models loaded once) for every batch it is given."""

    def __init__(self, spec, threads: int | None = None):
        from .harness import build_task

        if threads:
            import torch

            torch.set_num_threads(int(threads))
        self.task = build_task(spec)
        self.task.units()  # reads and checks the annotation file on this worker
        self.task.setup()

    def __call__(self, batch: dict) -> dict:
        rows: list[str] = []
        for group, keys in zip(batch["group"], batch["keys"]):
            rows += [json.dumps(r) for r in self.task.run_group(str(group), json.loads(keys))]
        return {"row": rows}


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise InputError('--ray needs Ray Data: pip install -e ".[scale]" (or pip install '
                         '"ray[data]")') from exc
    return ray


def run_groups_on_ray(task, todo: dict[str, list[str]], record: Callable[[list[dict]], None],
                      address: str | None = None, actors: int | None = None) -> None:
    """Run ``todo`` (group -> keys) on Ray; ``record(rows)`` gets the rows as they arrive."""
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        kw: dict = {"include_dashboard": False, "log_to_driver": False,
                    "ignore_reinit_error": True}
        if address:
            kw["address"] = address
        else:
            cpus = os.environ.get("REGIONLAB_RAY_CPUS")
            if cpus:
                kw["num_cpus"] = int(cpus)
        ray.init(**kw)
        started = True
    try:
        res = ray.cluster_resources()
        gpus = int(res.get("GPU", 0))
        cpus = max(1, int(res.get("CPU", 1)))
        n = actors or (gpus if gpus else cpus)
        n = max(1, min(n, len(todo)))
        ray.data.DataContext.get_current().enable_progress_bars = False  # ours is on stderr
        items = [{"group": g, "keys": json.dumps(k)} for g, k in todo.items()]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map_batches(_Worker, fn_constructor_args=(task.spec(), None if gpus else 1),
                            batch_size=1, concurrency=n, num_gpus=1 if gpus else 0,
                            num_cpus=0 if gpus else 1)
        for batch in ds.iter_batches(batch_size=None, batch_format="default"):
            record([json.loads(r) for r in batch["row"]])
    finally:
        if started:
            ray.shutdown()
