"""Model registry: named specs, availability, lazy cached loading, device and dtype policy.

>>> from regionlab import models
>>> [m.name for m in models.list_models("clip")][:1]
['shapes-clip']
"""

from __future__ import annotations

import logging
import os

from ..errors import ModelUnavailableError
from .registry import (
    KINDS,
    ModelInfo,
    ModelSpec,
    clear_cache,
    default_dtype,
    get_spec,
    list_model_names,
    list_models,
    load,
    register_adhoc,
    register_model,
    resolve_device,
)

log = logging.getLogger("regionlab.models")
DEFAULT_CLIP = "shapes-clip"


def load_clip(name: str | None = None, device=None):
    """Load a CLIP by name (default: ``REGIONLAB_CLIP`` or the bundled ``shapes-clip``)."""
    return load(name or os.environ.get("REGIONLAB_CLIP") or DEFAULT_CLIP, "clip", device)


def choose_default(kind: str, requested: str | None, fallback: str) -> tuple[str, str | None]:
    """The model to use when the app starts: ``requested`` if available, else ``fallback`` with
    a notice (also logged). Never a silent switch."""
    if not requested or requested == fallback:
        return fallback, None
    try:
        ok, why = get_spec(requested, kind).available()
    except ModelUnavailableError as exc:
        ok, why = False, str(exc)
    if ok:
        return requested, None
    notice = f"{kind} model {requested!r} is not available ({why}); using bundled {fallback!r}."
    log.warning(notice)
    return fallback, notice


__all__ = [
    "KINDS", "ModelInfo", "ModelSpec", "ModelUnavailableError", "DEFAULT_CLIP", "choose_default",
    "clear_cache", "default_dtype", "get_spec", "list_model_names", "list_models", "load",
    "load_clip", "register_adhoc", "register_model", "resolve_device",
]
