"""Files the app hands out: masks as PNG, embeddings as .npy, zips; a bounded scratch folder.

Gradio copies every returned file into its own cache (cleaned by ``Blocks(delete_cache=...)``);
the originals live in one scratch folder per app that is pruned by age on every write and
removed at exit, so nothing grows without bound.
"""

from __future__ import annotations

import atexit
import io
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
from PIL import Image


def mask_to_png_bytes(mask: np.ndarray) -> bytes:
    """A boolean mask -> greyscale 0/255 PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255).save(buf, "PNG")
    return buf.getvalue()


def image_to_png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image)).save(buf, "PNG")
    return buf.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


class Scratch:
    """A private temporary folder; files older than ``max_age`` seconds are pruned on write."""

    def __init__(self, max_age: float = 3600.0, prefix: str = "regionlab-"):
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        self.max_age = max_age
        self._lock = threading.Lock()
        atexit.register(self.close)

    def folder(self) -> Path:
        """A new empty sub-folder for one call's outputs."""
        self.prune()
        path = self.root / uuid.uuid4().hex
        path.mkdir(parents=True)
        return path

    def write(self, name: str, data: bytes, folder: Path | None = None) -> str:
        folder = folder or self.folder()
        path = folder / Path(name).name
        path.write_bytes(data)
        return str(path)

    def prune(self) -> None:
        cutoff = time.time() - self.max_age
        with self._lock:
            if not self.root.is_dir():
                self.root.mkdir(parents=True, exist_ok=True)
                return
            for sub in self.root.iterdir():
                try:
                    if sub.stat().st_mtime < cutoff:
                        shutil.rmtree(sub, ignore_errors=True)
                except FileNotFoundError:
                    continue

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
