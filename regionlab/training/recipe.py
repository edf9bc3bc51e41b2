"""Re-train the bundled ShapesWorld models from scratch, exactly as recorded next to the weights.

    python -m regionlab.training.recipe --dry-run            # print the commands
    python -m regionlab.training.recipe --out-dir runs/again # run them (hours on 2 CPU cores)
    python -m regionlab.training.recipe --compare runs/again # metrics: shipped vs re-trained
    python -m regionlab.training.recipe --check FILE         # test split: within tolerance?

A re-run can be split over several sittings: ``--resume`` skips every command whose record
(``runs/NAME.json``) is already in ``--out-dir``, ``--until NAME`` stops after the command that
writes ``runs/NAME``, ``--only NAME[,NAME]`` runs just those commands (e.g. a decoder stage whose
CLIP is ready while an earlier CLIP stage is not), and ``--carry`` lists the files of
``--out-dir`` that the commands still to run need (keep those, the rest can go).

Each ``assets/models/shapes_*.json`` records its ``commands`` in order (the CLIP first: the
captioner and the generator learn from its embeddings). Paths under ``runs/`` are moved to
``--out-dir``; a leading ``NAME=value`` sets an environment variable for that command (e.g.
``REGIONLAB_SHAPES_CLIP``, which CLIP the decoders embed with). The records keep the module
each command ran as: the training scripts were ``regionlab.shapes.train_*`` until they moved to
``regionlab.training`` (issue 27 item 6), so those names run as ``regionlab.training.train_*``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from regionlab.training import tolerance

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "models"
SHIPPED_QUALITY = ASSETS.parents[1] / "benchmarks" / "results" / "shapes_quality.json"
MODELS = ("shapes_clip", "shapes_captioner", "shapes_generator")


def recorded_commands(assets: Path = ASSETS) -> list[str]:
    """The recorded training commands of every bundled model, in dependency order."""
    out = []
    for name in MODELS:
        out += json.loads((assets / f"{name}.json").read_text())["commands"]
    return out


def split(command: str) -> tuple[dict, list[str]]:
    """(leading ``NAME=value`` environment variables, argv) of a recorded command."""
    env, argv = {}, []
    for tok in shlex.split(command):
        name, eq, value = tok.partition("=")
        if not argv and eq and name.isidentifier():
            env[name] = value
        else:
            argv.append(tok)
    return env, argv


TRAINING = "regionlab.training.train_"
# where the training scripts were when most of the recorded commands ran
FORMER = ("regionlab.shapes.train_",)


def training_module(name: str) -> str | None:
    """The module a recorded ``python -m NAME`` runs as today: a training script's current name
    (``regionlab.shapes.train_clip`` -> ``regionlab.training.train_clip``), None for any other
    module."""
    for prefix in (TRAINING, *FORMER):
        if name.startswith(prefix) and name[len(prefix):].isidentifier():
            return TRAINING + name[len(prefix):]
    return None


def relocate(command: str, out_dir: Path) -> tuple[dict, list[str]]:
    """(environment additions, argv) with ``runs/`` paths moved under ``out_dir`` and the
    training script under its current module name."""

    def moved(value: str) -> str:
        return str(out_dir / value[len("runs/"):]) if value.startswith("runs/") else value

    env, argv = split(command)
    module = training_module(argv[2]) if argv[:2] == ["python", "-m"] and len(argv) > 2 else None
    if module is None:
        raise ValueError(f"not a RegionLab training command: {command!r}")
    return ({k: moved(v) for k, v in env.items()},
            [sys.executable, "-m", module, *map(moved, argv[3:])])


def record_metrics(record: dict) -> dict:
    """``val_metrics_fp16`` of a stage record, flattened to ``{"a.b": number}``."""
    return dict(tolerance.flat_metrics(record["val_metrics_fp16"]))


def history_metrics(record: dict) -> dict:
    """The record's training history (losses, periodic val metrics) as ``{"history.STEP.k": x}``;
    wall-clock seconds left out."""
    out = {}
    for entry in record.get("history", []):
        rest = {k: v for k, v in entry.items() if k not in ("step", "seconds")}
        out.update(tolerance.flat_metrics(rest, f"history.{entry['step']}."))
    return out


def run_name(command: str) -> str:
    """The run a recorded command writes (``--out runs/NAME`` -> ``NAME``)."""
    argv = split(command)[1]
    out = argv[argv.index("--out") + 1]
    if not out.startswith("runs/"):
        raise ValueError(f"the command writes outside runs/: {out!r}")
    return out[len("runs/"):]


def inputs(command: str) -> set[str]:
    """Files under ``runs/`` a recorded command reads (``--init``, environment variables), as
    paths relative to ``runs/``."""
    env, argv = split(command)
    read = {v[len("runs/"):] for v in [*env.values(), *argv] if v.startswith("runs/")}
    return read - {run_name(command)}


def stage_records(name: str, assets: Path = ASSETS) -> dict[str, dict]:
    """The recorded metrics of every stage of a bundled model, by run name in command order.

    The CLIP keeps one key per stage (``stage1`` ...); the decoders nest the stage before
    (``previous_stage``, the first one as ``stage1``) inside the record of the next.
    """
    record = json.loads((assets / f"{name}.json").read_text())
    runs = [run_name(c) for c in record["commands"]]
    if all(r in record for r in runs):
        return {r: record[r] for r in runs}
    chain, node = [], record
    while isinstance(node, dict):
        chain.append(node)
        node = node.get("previous_stage") or node.get("stage1")
    if len(chain) != len(runs):
        raise ValueError(f"{name}: {len(runs)} commands but {len(chain)} stage records")
    return dict(zip(runs, reversed(chain)))


def final_stage(name: str, assets: Path = ASSETS) -> str:
    """The run name (``--out runs/NAME``) of a model's last recorded command: its shipped stage."""
    return run_name(json.loads((assets / f"{name}.json").read_text())["commands"][-1])


def compare(out_dir: Path, assets: Path = ASSETS) -> list[dict]:
    """Per metric of every stage re-run in ``out_dir``: recorded, re-trained and difference.

    Metrics are the stage's final val metrics and its history (losses and periodic val
    metrics); only those present in both records are compared.
    """
    rows = []
    for name in MODELS:
        for run, recorded in stage_records(name, assets).items():
            again = out_dir / f"{run}.json"
            if not again.exists():
                continue
            again = json.loads(again.read_text())
            for metrics in (record_metrics, history_metrics):
                old, new = metrics(recorded), metrics(again)
                rows += [{"model": name, "run": run, "metric": k, "recorded": old[k],
                          "again": v, "difference": v - old[k]}
                         for k, v in new.items() if k in old]
    return rows


def summarise(rows: list[dict], out_dir: Path, assets: Path = ASSETS) -> list[dict]:
    """Per re-run stage: how many metrics were compared, how many are identical, the largest
    difference, and the recorded and re-run wall times."""
    out = []
    for name in MODELS:
        for run, recorded in stage_records(name, assets).items():
            mine = [r for r in rows if r["model"] == name and r["run"] == run]
            if not mine:
                continue
            again = json.loads((out_dir / f"{run}.json").read_text())
            out.append({
                "model": name, "run": run, "compared": len(mine),
                "identical": sum(r["difference"] == 0 for r in mine),
                "max_abs_difference": max(abs(r["difference"]) for r in mine),
                "wall_seconds": {"recorded": recorded.get("wall_seconds"),
                                 "again": again.get("wall_seconds")},
            })
    return out


def pending(out_dir: Path, commands: list[str]) -> list[str]:
    """The commands whose record (``NAME.json``) is not yet in ``out_dir``."""
    return [c for c in commands if not (out_dir / f"{run_name(c)}.json").exists()]


def carry(out_dir: Path, commands: list[str]) -> list[str]:
    """Files of ``out_dir`` that the pending commands read and do not write themselves."""
    todo = pending(out_dir, commands)
    made = {f"{run_name(c)}.safetensors" for c in todo}
    return sorted(set().union(*map(inputs, todo)) - made) if todo else []


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", type=Path, default=Path("runs/recipe"))
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--compare", type=Path, default=None, metavar="DIR",
                   help="compare the re-run stages' metrics in DIR with the recorded ones")
    p.add_argument("--resume", action="store_true",
                   help="skip the commands whose record is already in --out-dir")
    p.add_argument("--until", default=None, metavar="NAME",
                   help="stop after the command that writes runs/NAME")
    p.add_argument("--only", default=None, metavar="NAME[,NAME]",
                   help="run just the commands that write these runs/NAME (their inputs must "
                        "be in --out-dir or be written by an earlier one of them)")
    p.add_argument("--carry", action="store_true",
                   help="list the files of --out-dir that the commands still to run need")
    p.add_argument("--check", type=Path, default=None, metavar="FILE",
                   help="test-split shapes_quality result of the re-trained CLIP: does it meet "
                        "the targets and the tolerance? (exit status 1 if not)")
    p.add_argument("--shipped", type=Path, default=SHIPPED_QUALITY, metavar="FILE",
                   help="the shipped CLIP's result for --check")
    a = p.parse_args(argv)
    if a.check:
        results = []
        for f in (a.shipped, a.check):
            try:
                results.append(json.loads(f.read_text()))
            except (OSError, json.JSONDecodeError) as e:
                p.error(f"--check: cannot read {f}: {e}")
        try:
            rows = tolerance.check(*results)
        except (KeyError, ValueError) as e:
            p.error(f"--check: {e}")
        ok = tolerance.passes(rows)
        print(json.dumps({"shipped": str(a.shipped), "again": str(a.check), "passes": ok,
                          "rows": rows}, indent=2))
        sys.exit(0 if ok else 1)
    if a.compare:
        rows = compare(a.compare)
        if not rows:
            p.error(f"no re-run stage records in {a.compare}")
        print(json.dumps({"stages": summarise(rows, a.compare), "rows": rows}, indent=2))
        return
    commands = recorded_commands()
    if a.carry:
        needed = carry(a.out_dir, commands)
        missing = [f for f in needed if not (a.out_dir / f).exists()]
        print("\n".join(str(a.out_dir / f) for f in needed))
        if missing:
            p.error(f"needed but missing from {a.out_dir}: {', '.join(missing)}")
        return
    runs = [run_name(c) for c in commands]
    only = a.only.split(",") if a.only else []
    for name in [*([a.until] if a.until is not None else []), *only]:
        if name not in runs:
            p.error(f"no recorded command writes runs/{name}; they write {', '.join(runs)}")
    if a.until is not None:
        commands = commands[: runs.index(a.until) + 1]
    if only:
        commands = [c for c in commands if run_name(c) in only]
        made = set()
        for c in commands:
            missing = sorted(f for f in inputs(c) - made if not (a.out_dir / f).exists())
            if missing:
                p.error(f"--only: runs/{run_name(c)} needs {', '.join(missing)} in {a.out_dir}")
            made.add(f"{run_name(c)}.safetensors")
    if a.resume:
        commands = pending(a.out_dir, commands)
    a.out_dir.mkdir(parents=True, exist_ok=True)
    for cmd in commands:
        env, args = relocate(cmd, a.out_dir)
        shown = " ".join([*(f"{k}={v}" for k, v in env.items()), *map(shlex.quote, args)])
        print(shown, flush=True)
        if not a.dry_run:
            subprocess.run(args, env={**os.environ, **env}, check=True)


if __name__ == "__main__":
    main()
