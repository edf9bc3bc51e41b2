"""A registry of named model specs with lazy, cached, thread-safe loading.

Every model the app can use has a name, a kind (``clip``, ``sam``, ``captioner``,
``generator``), a source (``bundled:...``, an open_clip pretrained tag, ``hf-hub:org/repo``, or
a local path) and a loader. Loaded models are read-only and shared process-wide: one instance
per (name, device, dtype).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import ModelUnavailableError

log = logging.getLogger("regionlab.models")
KINDS = ("clip", "sam", "captioner", "generator")


@dataclass(frozen=True)
class ModelSpec:
    """A named model: where its weights come from and how to load them."""

    name: str
    kind: str
    source: str
    loader: Callable[[ModelSpec, torch.device, torch.dtype], Any]
    availability: Callable[[ModelSpec], tuple[bool, str]]
    description: str = ""
    arch: str | None = None
    how_to_get: str = ""
    extra: dict = field(default_factory=dict)

    def available(self) -> tuple[bool, str]:
        """(is it loadable here without the network?, the reason)."""
        try:
            return self.availability(self)
        except Exception as exc:  # availability checks must never crash a listing
            return False, f"availability check failed: {exc}"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    kind: str
    source: str
    available: bool
    reason: str
    description: str

    def __str__(self) -> str:
        mark = "available" if self.available else "not available"
        return f"{self.name} [{self.kind}] ({mark}: {self.reason})"


_SPECS: dict[str, ModelSpec] = {}
_ADHOC: dict[str, Callable[[str, str], ModelSpec]] = {}
_CACHE: dict[tuple, Any] = {}
_LOCKS: dict[tuple, threading.Lock] = {}
_GUARD = threading.Lock()


def register_model(spec: ModelSpec, overwrite: bool = False) -> ModelSpec:
    if spec.kind not in KINDS:
        raise ValueError(f"unknown model kind {spec.kind!r}; expected one of {KINDS}")
    if spec.name in _SPECS and not overwrite:
        raise ValueError(f"model {spec.name!r} is already registered")
    _SPECS[spec.name] = spec
    return spec


def register_adhoc(kind: str, factory: Callable[[str, str], ModelSpec]) -> None:
    """Let names ``ARCH@SOURCE`` of this kind build a spec on the fly."""
    _ADHOC[kind] = factory


def _ensure_builtin() -> None:
    from . import builtin  # noqa: F401  (registers the built-in specs on import)


def get_spec(name: str, kind: str | None = None) -> ModelSpec:
    """The spec named ``name``, or an ad-hoc ``ARCH@SOURCE`` spec of ``kind``."""
    _ensure_builtin()
    if name in _SPECS:
        spec = _SPECS[name]
        if kind and spec.kind != kind:
            raise ValueError(f"model {name!r} is a {spec.kind} model, not a {kind} model")
        return spec
    if "@" in name:
        kinds = [kind] if kind else list(_ADHOC)
        for k in kinds:
            if k in _ADHOC:
                arch, source = name.split("@", 1)
                return _ADHOC[k](arch.strip(), source.strip())
    known = ", ".join(list_model_names(kind))
    raise ModelUnavailableError(
        f"unknown {kind or ''} model {name!r}. Known: {known}. Or give ARCH@SOURCE, e.g. "
        f"ViT-B-16@openai, ViT-B-16@/path/to/weights.pt, ViT-B-16@hf-hub:org/repo"
    )


def list_model_names(kind: str | None = None) -> list[str]:
    _ensure_builtin()
    return [n for n, s in _SPECS.items() if kind is None or s.kind == kind]


def list_models(kind: str | None = None) -> list[ModelInfo]:
    """Every registered model of ``kind`` (all kinds if None), each marked available or not."""
    out = []
    for name in list_model_names(kind):
        s = _SPECS[name]
        ok, why = s.available()
        out.append(ModelInfo(s.name, s.kind, s.source, ok, why, s.description))
    return out


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """cuda > mps > cpu, overridable by the argument or ``REGIONLAB_DEVICE``."""
    choice = str(device or os.environ.get("REGIONLAB_DEVICE") or "auto").lower()
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(choice)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelUnavailableError(f"device {choice!r} requested but CUDA is not available")
    return dev


def default_dtype(kind: str, device: torch.device) -> torch.dtype:
    """fp32 on CPU/MPS and for CLIP everywhere (MaskInversion optimises through it); fp16 for
    the diffusion generator on CUDA."""
    if device.type == "cuda" and kind == "generator":
        return torch.float16
    return torch.float32


def load(name: str, kind: str | None = None, device=None, dtype: torch.dtype | None = None):
    """Load (once per process) and return the model named ``name``. Thread-safe."""
    spec = get_spec(name, kind)
    dev = resolve_device(device)
    dt = dtype or default_dtype(spec.kind, dev)
    key = (spec.name, spec.kind, str(dev), str(dt))
    with _GUARD:
        if key in _CACHE:
            return _CACHE[key]
        lock = _LOCKS.setdefault(key, threading.Lock())
    with lock:
        if key not in _CACHE:
            log.info("loading %s model %s from %s on %s", spec.kind, spec.name, spec.source, dev)
            _CACHE[key] = spec.loader(spec, dev, dt)
    return _CACHE[key]


def clear_cache() -> None:
    """Drop every loaded model (frees memory; the next ``load`` reloads)."""
    with _GUARD:
        _CACHE.clear()
        _LOCKS.clear()
