"""The Export zip: results JSON, region masks and overlays (PNG), embeddings (.npy)."""

from __future__ import annotations

import io
import json
import re
import zipfile

import numpy as np

from .draw import heatmap, overlay_regions
from .files import image_to_png_bytes, mask_to_png_bytes, npy_bytes
from .session import Session


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "region"


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return None  # arrays go to their own files
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def build_zip(session: Session, settings: dict | None = None) -> bytes:
    """Everything the session has, as zip bytes. Refuses when there is no image."""
    image = session.require_image()
    buf = io.BytesIO()
    regions = []
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("image.png", image_to_png_bytes(image))
        if session.regions:
            zf.writestr("overlay.png", image_to_png_bytes(overlay_regions(
                image, [r.mask for r in session.regions], [r.colour for r in session.regions])))
        for i, r in enumerate(session.regions):
            stem = f"regions/{i:02d}_{_slug(r.name)}"
            zf.writestr(f"{stem}_mask.png", mask_to_png_bytes(r.mask))
            zf.writestr(f"{stem}_overlay.png",
                        image_to_png_bytes(overlay_regions(image, [r.mask], [r.colour])))
            regions.append({"index": i, "name": r.name, "source": r.source, "area": r.area,
                            "colour": list(r.colour), "points": [list(p) for p in r.points],
                            "box": list(r.box) if r.box else None,
                            "mask": f"{stem}_mask.png"})
        inv = session.results.get("invert")
        if inv is not None:
            zf.writestr("embeddings.npy", npy_bytes(inv["embeddings"]))
            for i, m in enumerate(inv["maps"]):
                zf.writestr(f"heatmaps/{i:02d}_after.png", image_to_png_bytes(heatmap(m, image)))
        for key in ("label_overlay", "ground_overlay"):
            if key in session.results:
                zf.writestr(f"{key}.png", image_to_png_bytes(session.results[key]))
        doc = {
            "image": {"name": session.image_name, "height": int(image.shape[0]),
                      "width": int(image.shape[1])},
            "regions": regions,
            "settings": _jsonable(settings or {}),
            "timings": _jsonable(session.timings),
            "results": {k: _jsonable(v) for k, v in session.results.items()
                        if k not in ("invert_cache", "label_overlay", "ground_overlay")},
        }
        if inv is not None:
            doc["results"]["invert"] = _jsonable({k: v for k, v in inv.items()
                                                  if k not in ("embeddings", "maps", "history",
                                                               "initial_maps", "cache")})
            doc["results"]["invert"]["embeddings"] = "embeddings.npy"
        zf.writestr("results.json", json.dumps(doc, indent=2))
    return buf.getvalue()
