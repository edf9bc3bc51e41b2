"""ZeroGPU support: ``spaces.GPU`` on model work when the ``spaces`` package is importable.

On a ZeroGPU Space, a GPU is attached only while a function decorated with ``spaces.GPU`` runs;
such functions must return CPU data (numpy arrays, CPU tensors, plain Python). Everywhere else
the decorator is the identity.
"""

from __future__ import annotations

import functools
import gc
import importlib.util
import os
from collections.abc import Callable

from ..errors import ResourceError


def _spaces_gpu():
    if importlib.util.find_spec("spaces") is None:
        return None
    try:
        import spaces
    except Exception:  # a broken install must not stop the app
        return None
    return getattr(spaces, "GPU", None)


def on_zero_gpu() -> bool:
    """True on a ZeroGPU Space: GPU objects must not outlive a decorated call there."""
    return bool(os.environ.get("SPACES_ZERO_GPU")) and _spaces_gpu() is not None


def gpu_task(duration: int = 60) -> Callable[[Callable], Callable]:
    """Decorate model work: OOM becomes a :class:`ResourceError`; ``spaces.GPU`` if present."""

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def guarded(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except MemoryError:
                _free()
                raise ResourceError(
                    "out of memory: lower the resolution or the number of regions") from None
            except RuntimeError as exc:
                if "out of memory" not in str(exc).lower():
                    raise
                _free()
                raise ResourceError(
                    "GPU out of memory: lower the resolution or the number of regions, "
                    "or switch to a smaller model in Settings") from None

        gpu = _spaces_gpu()
        return gpu(duration=duration)(guarded) if gpu is not None else guarded

    return deco


def _free() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass
