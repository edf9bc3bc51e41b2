"""Re-train the bundled ShapesWorld models from scratch, exactly as recorded next to the weights.

    python -m regionlab.shapes.recipe --dry-run            # print the commands
    python -m regionlab.shapes.recipe --out-dir runs/again # run them (hours on 2 CPU cores)
    python -m regionlab.shapes.recipe --compare runs/again # metrics: shipped vs re-trained

Each ``assets/models/shapes_*.json`` records its ``commands`` in order (the CLIP first: the
captioner and the generator learn from its embeddings). Paths under ``runs/`` are moved to
``--out-dir``; a leading ``NAME=value`` sets an environment variable for that command (e.g.
``REGIONLAB_SHAPES_CLIP``, which CLIP the decoders embed with).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "models"
MODELS = ("shapes_clip", "shapes_captioner", "shapes_generator")


def recorded_commands(assets: Path = ASSETS) -> list[str]:
    """The recorded training commands of every bundled model, in dependency order."""
    out = []
    for name in MODELS:
        out += json.loads((assets / f"{name}.json").read_text())["commands"]
    return out


def relocate(command: str, out_dir: Path) -> tuple[dict, list[str]]:
    """(environment additions, argv) with ``runs/`` paths moved under ``out_dir``."""

    def moved(value: str) -> str:
        return str(out_dir / value[len("runs/"):]) if value.startswith("runs/") else value

    env, argv = {}, []
    for tok in shlex.split(command):
        name, eq, value = tok.partition("=")
        if not argv and eq and name.isidentifier():
            env[name] = moved(value)
        else:
            argv.append(moved(tok))
    if argv[:2] != ["python", "-m"] or len(argv) < 3 or not argv[2].startswith(
            "regionlab.shapes.train_"):
        raise ValueError(f"not a RegionLab training command: {command!r}")
    return env, [sys.executable, *argv[1:]]


def final_metrics(path: Path) -> dict:
    """``val_metrics_fp16`` of a model record, flattened to ``{"a.b": number}``."""
    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            elif isinstance(v, (int, float)) and k not in ("n", "steps", "guidance"):
                yield f"{prefix}{k}", float(v)
    return dict(flat(json.loads(path.read_text())["val_metrics_fp16"]))


def final_stage(name: str, assets: Path = ASSETS) -> str:
    """The run name (``--out runs/NAME``) of a model's last recorded command: its shipped stage."""
    argv = shlex.split(json.loads((assets / f"{name}.json").read_text())["commands"][-1])
    out = argv[argv.index("--out") + 1]
    if not out.startswith("runs/"):
        raise ValueError(f"{name}: the last command writes outside runs/: {out!r}")
    return out[len("runs/"):]


def compare(out_dir: Path, assets: Path = ASSETS) -> list[dict]:
    """Per metric of each model: shipped, re-trained (the last stage's record) and difference."""
    rows = []
    for name in MODELS:
        again = out_dir / f"{final_stage(name, assets)}.json"
        if not again.exists():
            continue
        shipped = final_metrics(assets / f"{name}.json")
        for k, v in final_metrics(again).items():
            if k in shipped:
                rows.append({"model": name, "metric": k, "shipped": shipped[k], "again": v,
                             "difference": v - shipped[k]})
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", type=Path, default=Path("runs/recipe"))
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--compare", type=Path, default=None, metavar="DIR",
                   help="compare a finished re-run's metrics with the shipped ones")
    a = p.parse_args(argv)
    if a.compare:
        rows = compare(a.compare)
        if not rows:
            p.error(f"no finished re-run records in {a.compare}")
        print(json.dumps(rows, indent=2))
        return
    a.out_dir.mkdir(parents=True, exist_ok=True)
    for cmd in recorded_commands():
        env, args = relocate(cmd, a.out_dir)
        shown = " ".join([*(f"{k}={v}" for k, v in env.items()), *map(shlex.quote, args)])
        print(shown, flush=True)
        if not a.dry_run:
            subprocess.run(args, env={**os.environ, **env}, check=True)


if __name__ == "__main__":
    main()
