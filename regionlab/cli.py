"""The ``regionlab`` command: one subcommand per task.

Conventions shared by all subcommands:
- ``--json`` prints machine-readable results on stdout; logs go to stderr, and so does each
  entry of a result's ``warnings`` list (e.g. words the model does not know).
- Every subcommand that takes an image also takes ``--manifest FILE.jsonl``: each line is a
  JSON object whose keys are the subcommand's arguments (``image``, ``masks``, ...); all lines
  run in one process and print one JSON result per line, in order. A bad line yields
  ``{"line": n, "error": "..."}`` instead of crashing the batch; the exit code is 1 if any line
  failed. Values given on the command line are defaults for the manifest lines.
- File outputs go to ``--out`` / ``--out-dir`` (per manifest line: ``OUT_DIR/<line>/``).

Subcommands live in ``regionlab.commands.<name>`` and define ``NAME``, ``HELP``,
``MANIFEST_KEYS`` (documentation), ``add_arguments(parser)``, ``item_from_args(args)`` and
``run(item, args, out_dir)`` returning a JSON-serialisable dict.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
from pathlib import Path

from .errors import RegionLabError

SUBCOMMANDS = [
    "classify",
    "regions",
    "shapes_dataset",
    "shapes",
    "example_scene",
    "label",
    "segment",
    "proposals",
    "caption",
    "generate",
    "ground",
    "eval",
]

log = logging.getLogger("regionlab")


def _load_commands():
    mods = []
    for name in SUBCOMMANDS:
        try:
            mods.append(importlib.import_module(f"regionlab.commands.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"regionlab.commands.{name}":
                raise
    return mods


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(
        prog="regionlab",
        description="Region-level vision-language tools (MaskInversion, ReCLIP, OVSeg labelling).",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, mps or auto (REGIONLAB_DEVICE)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    mods = {}
    for mod in _load_commands():
        keys = getattr(mod, "MANIFEST_KEYS", "")
        epilog = f"manifest keys (one JSON object per line): {keys}" if keys else None
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP, epilog=epilog)
        mod.add_arguments(p)
        p.add_argument("--json", action="store_true", help="print JSON results on stdout")
        if getattr(mod, "TAKES_MANIFEST", True):
            p.add_argument("--manifest", type=Path, help="JSONL file, one input per line")
        mods[mod.NAME] = mod
    return parser, mods


def _warn(command: str, result) -> None:
    """A result's ``warnings`` (things the model cannot know, ...) also go to stderr."""
    rows = result if isinstance(result, list) else [result]
    seen: list[str] = []
    for row in rows:
        for w in (row.get("warnings") or []) if isinstance(row, dict) else []:
            if w not in seen:
                seen.append(w)
                print(f"regionlab {command}: warning: {w}", file=sys.stderr)


def _emit(result, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result), flush=True)
    else:
        print(json.dumps(result, indent=2), flush=True)


def run_manifest(mod, args) -> int:
    failed = 0
    base_out = getattr(args, "out_dir", None)
    with open(args.manifest, encoding="utf-8") as fh:
        lines = [ln for ln in fh.read().splitlines()]
    n = 0
    for lineno, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        n += 1
        t0 = time.perf_counter()
        try:
            item = json.loads(raw)
            if not isinstance(item, dict):
                raise RegionLabError("manifest line is not a JSON object")
            defaults = mod.item_from_args(args, manifest=True)
            merged = {**defaults, **item}
            out_dir = Path(base_out) / str(lineno) if base_out else None
            result = mod.run(merged, args, out_dir)
            result = {"line": lineno, **result}
            _warn(args.command, result)
        except (
            RegionLabError,
            ValueError,
            OSError,
            json.JSONDecodeError,
            KeyError,
            TypeError,
        ) as exc:
            failed += 1
            result = {"line": lineno, "error": f"{type(exc).__name__}: {exc}"}
        log.info("line %d done in %.2fs", lineno, time.perf_counter() - t0)
        print(json.dumps(result), flush=True)
    if n == 0:
        print(json.dumps({"error": "manifest has no lines"}), flush=True)
        return 1
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser, mods = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.device:
        import os

        os.environ["REGIONLAB_DEVICE"] = args.device
    mod = mods[args.command]
    try:
        if getattr(args, "manifest", None):
            return run_manifest(mod, args)
        item = mod.item_from_args(args, manifest=False)
        out_dir = getattr(args, "out_dir", None)
        result = mod.run(item, args, Path(out_dir) if out_dir else None)
    except (RegionLabError, ValueError, OSError) as exc:
        print(f"regionlab {args.command}: error: {exc}", file=sys.stderr)
        if getattr(args, "json", False):
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 2
    _warn(args.command, result)
    _emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
