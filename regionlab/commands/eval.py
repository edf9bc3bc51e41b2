"""``regionlab eval``: published-protocol evaluations over standard dataset files.

``regionlab eval ground --refs FILE.jsonl --images DIR [--detections FILE] [--limit N]
[--json]``: ReCLIP's referring-expression protocol on the ReCLIP/RefCOCO JSONL files (correct
iff IoU > 0.5 with the gold box; skipped sentences count as wrong and are reported), overall
and by expression kind, with a progress bar on stderr.
"""

from __future__ import annotations

from ..errors import InputError

NAME = "eval"
HELP = "evaluate on standard dataset files (ground: ReCLIP JSONL, accuracy at IoU > 0.5)"
MANIFEST_KEYS = ("task, refs, images, detections, limit, models, scorer, combine, temperature, "
                 "margin")
TASKS = ("ground",)


def add_arguments(p) -> None:
    p.add_argument("task", choices=TASKS, help="what to evaluate")
    p.add_argument("--refs", help="ReCLIP JSONL file (one referred object per line)")
    p.add_argument("--images", help="folder of the images the JSONL names")
    p.add_argument("--detections", default=None,
                   help="detections JSON as proposals (default: the ground-truth boxes)")
    p.add_argument("--limit", type=int, default=None, help="at most N sentences")
    p.add_argument("--scorer", default="ips", choices=["ips", "masked-crop", "maskinversion"])
    p.add_argument("--model", dest="models", action="append", default=None,
                   help="CLIP name or ARCH@SOURCE; repeat for an ensemble")
    p.add_argument("--combine", default="tree", choices=["tree", "calibrated", "reference"])
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--margin", type=float, default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def item_from_args(args, manifest: bool) -> dict:
    return {"task": args.task, "refs": args.refs, "images": args.images,
            "detections": args.detections, "limit": args.limit, "scorer": args.scorer,
            "models": args.models, "combine": args.combine, "temperature": args.temperature,
            "margin": args.margin,
            "progress": not args.no_progress}


def run(item: dict, args, out_dir) -> dict:
    import sys

    from ..eval.reclip import evaluate_jsonl
    from ..tasks.reclip import GroundingOptions

    if not item.get("refs") or not item.get("images"):
        raise InputError("eval ground needs --refs FILE.jsonl and --images DIR")
    if item.get("limit") is not None and int(item["limit"]) < 1:
        raise InputError(f"--limit must be at least 1, got {item['limit']}")
    options = GroundingOptions(combine=item.get("combine") or "tree",
                               temperature=item.get("temperature"),
                               margin=item.get("margin"))
    return evaluate_jsonl(item["refs"], item["images"], models=item.get("models"),
                          scorer=item.get("scorer") or "ips", detections=item.get("detections"),
                          options=options, limit=item.get("limit"),
                          log=lambda m: print(m, file=sys.stderr),
                          progress=bool(item.get("progress", True)))
