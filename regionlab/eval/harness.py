"""Conventions shared by every ``regionlab eval`` task (ground, classify, label).

- **Units and groups.** A task lists its *units* (what is scored: a sentence, an instance
  mask, an image), each with a stable ``key`` and the *group* it belongs to (what is computed
  once and shared: proposals of a ReCLIP line, the image of COCO instances, one image of a
  segmentation folder). Work is done one group at a time; per-unit results are plain
  JSON-serialisable rows, and the metrics are computed from the rows alone.
- **Subsets.** ``limit=N`` keeps the first N units in file order; with ``seed=S`` it keeps N
  units drawn at random with seed S instead (the same N for the same S on every machine, and
  the first N of the same seed's order for a larger N, so a larger run extends a smaller one).
- **Resume.** With an output folder, every finished unit's row is appended (and flushed) to
  ``OUT/items.jsonl``; a run started again with the same settings reads it and computes only
  the units that are not in it yet (a half-written last line, from a run killed while writing,
  is dropped). ``OUT/run.json`` holds the settings that change a unit's result; resuming with
  other settings is refused (name another ``--out``). ``--limit``/``--seed`` are not among
  them: a run with a larger limit, or none, resumes a smaller one.
- **Outputs.** ``OUT/summary.json`` (the metrics, also returned) and ``OUT/table.md`` (a
  markdown table laid out like the paper's table).
- **Progress.** A tqdm bar on stderr with the rate and the time left.
- **Bad files.** :class:`AnnotationError` names the file and the entry.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

ITEMS_FILE = "items.jsonl"
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
TABLE_FILE = "table.md"


class AnnotationError(InputError):
    """A malformed annotation file: the message names the file and the entry."""

    def __init__(self, path, entry: str, why: str):
        self.path, self.entry, self.why = str(path), entry, why
        super().__init__(f"malformed annotation file {path}: {entry}: {why}")


@dataclass(frozen=True)
class Unit:
    """One scored item: ``key`` is unique and stable across runs (it is written to the JSONL);
    units with the same ``group`` share their per-image work."""

    key: str
    group: str


class EvalTask:
    """What a task provides to :func:`run_eval` (subclasses override every method).

    ``spec()`` returns ``(module:Class, kwargs)`` so another process (a Ray actor) can rebuild
    the task; ``config()`` the settings that change a unit's result (checked on resume)."""

    name = "task"
    unit = "item"

    def spec(self) -> tuple[str, dict]:
        raise NotImplementedError

    def config(self) -> dict:
        raise NotImplementedError

    def units(self) -> list[Unit]:
        """All units in file order; raises :class:`AnnotationError` on a malformed file."""
        raise NotImplementedError

    def setup(self) -> None:
        """Load models (once per process)."""

    def run_group(self, group: str, keys: list[str]) -> list[dict]:
        """Rows (each with ``"key"``) for ``keys`` of ``group``, in any order."""
        raise NotImplementedError

    def summarize(self, rows: list[dict]) -> dict:
        raise NotImplementedError

    def table(self, summary: dict) -> str:
        raise NotImplementedError

    def write_extra(self, out_dir: Path, rows: list[dict], summary: dict) -> None:
        """More files in the output folder (e.g. per-class results); none by default."""

    def log(self, message: str) -> None:
        """One line about a skipped unit (the CLI passes a logger; nothing below it prints)."""


def build_task(spec: tuple[str, dict]) -> EvalTask:
    """A task from :meth:`EvalTask.spec` (``"module:Class"``, kwargs)."""
    import importlib

    target, kwargs = spec
    mod, _, cls = target.partition(":")
    return getattr(importlib.import_module(mod), cls)(**kwargs)


def select(units: list[Unit], limit: int | None = None, seed: int | None = None) -> list[Unit]:
    """The units to evaluate: all, the first ``limit``, or (with ``seed``) ``limit`` drawn at
    random; the result keeps file order."""
    if limit is not None and int(limit) < 1:
        raise InputError(f"--limit must be at least 1, got {limit}")
    if seed is None:
        return list(units[: limit]) if limit is not None else list(units)
    order = np.random.default_rng(int(seed)).permutation(len(units))
    keep = sorted(order[: limit].tolist()) if limit is not None else sorted(order.tolist())
    return [units[i] for i in keep]


def group_units(units: Iterable[Unit]) -> OrderedDict[str, list[str]]:
    groups: OrderedDict[str, list[str]] = OrderedDict()
    for u in units:
        groups.setdefault(u.group, []).append(u.key)
    return groups


class ResultsLog:
    """``OUT/items.jsonl``: one JSON row per finished unit, appended and flushed at once."""

    def __init__(self, out_dir, config: dict):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / ITEMS_FILE
        run_path = self.dir / RUN_FILE
        config = json.loads(json.dumps(config))  # as it will read back
        if run_path.is_file() and self.path.is_file():
            old = json.loads(run_path.read_text(encoding="utf-8")).get("config", {})
            diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            if diff:
                raise InputError(
                    f"{self.dir} holds a run with other settings ({', '.join(diff)}: "
                    f"{', '.join(f'{old.get(k)!r} there, {config.get(k)!r} now' for k in diff)})"
                    f"; give another --out, or delete {self.path} to start over")
        run_path.write_text(json.dumps({"config": config}, indent=1) + "\n", encoding="utf-8")
        self.rows: dict[str, dict] = {}
        if self.path.is_file():
            self._read()

    def _read(self) -> None:
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a run killed mid-write left half a line: drop it
            with open(self.path, "r+b") as fh:
                fh.truncate(end)
        for n, raw in enumerate(data[:end].splitlines(), 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
                self.rows[str(row["key"])] = row
            except (json.JSONDecodeError, KeyError, TypeError):
                raise InputError(f"{self.path}, line {n}: not a result row; delete the file "
                                 f"to start over") from None

    def append(self, rows: list[dict]) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        for r in rows:
            self.rows[str(r["key"])] = r


def progress_bar(total: int, initial: int, unit: str, enabled: bool):
    """A tqdm bar on stderr: count, rate and time left (ETA)."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit=unit, file=sys.stderr, dynamic_ncols=True,
                smoothing=0.1)


def run_eval(task: EvalTask, out_dir=None, limit: int | None = None, seed: int | None = None,
             progress: bool = False, ray: str | bool | None = None) -> dict:
    """Evaluate ``task`` on the selected units, resuming from ``out_dir`` when it holds rows.

    ``ray``: None (this process), True (a local Ray instance) or a cluster address; the rows
    and therefore the metrics are the same either way. Returns the summary (also written to
    ``OUT/summary.json`` with the table in ``OUT/table.md``)."""
    t0 = time.perf_counter()
    units = task.units()
    chosen = select(units, limit, seed)
    if not chosen:
        raise InputError(f"nothing to evaluate: the {task.name} input has no {task.unit}s")
    results = ResultsLog(out_dir, task.config()) if out_dir is not None else None
    done: dict[str, dict] = dict(results.rows) if results else {}
    resumed = sum(u.key in done for u in chosen)
    todo = group_units(u for u in chosen if u.key not in done)
    bar = progress_bar(len(chosen), resumed, task.unit, progress)

    def record(rows: list[dict]) -> None:
        if results:
            results.append([r for r in rows if not r.get("transient")])
        for r in rows:
            done[str(r["key"])] = r
        if bar:
            bar.update(len(rows))

    try:
        if todo and ray is not None and ray is not False:
            from .ray_runner import run_groups_on_ray

            run_groups_on_ray(task, todo, record, address=None if ray is True else ray)
        elif todo:
            task.setup()
            for group, keys in todo.items():
                record(task.run_group(group, keys))
    finally:
        if bar:
            bar.close()
    missing = [u.key for u in chosen if u.key not in done]
    if missing:
        raise RuntimeError(f"{len(missing)} {task.unit}s got no result, e.g. {missing[:3]}")
    rows = [done[u.key] for u in chosen]
    summary = task.summarize(rows)
    summary.update({"limit": limit, "seed": seed, "resumed": resumed,
                    "seconds": round(time.perf_counter() - t0, 3)})
    if out_dir is not None:
        summary["out"] = str(out_dir)
        write_outputs(Path(out_dir), summary, task.table(summary))
        task.write_extra(Path(out_dir), rows, summary)
    return summary


def write_outputs(out_dir: Path, summary: dict, table: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SUMMARY_FILE).write_text(json.dumps(clean(summary), indent=1) + "\n",
                                        encoding="utf-8")
    (out_dir / TABLE_FILE).write_text(table.rstrip() + "\n", encoding="utf-8")


def clean(value):
    """JSON-safe: NaN -> None (strict JSON has no NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def pct(value) -> str:
    """A fraction as the papers print it: a percentage with one decimal ("-" if unknown)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * float(value):.1f}"


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
