"""What a training run ran on, recorded next to its metrics.

The recipe replays bit-identically on one machine and software stack; across machines the
floating-point kernels (chosen by CPU capability) and unpinned libraries (Pillow draws the
scenes) can differ, so each training record keeps this to tell the two cases apart.
"""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(threads: int) -> dict:
    """Versions and machine facts that can change a training run's floating-point results."""
    import torch

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        **{name: version(dist) for name, dist in (
            ("numpy", "numpy"), ("pillow", "pillow"), ("open_clip", "open_clip_torch"),
            ("transformers", "transformers"), ("diffusers", "diffusers"))},
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": threads,
    }
