"""Per-session state of the app (one object per browser tab or API client; never shared).

Pure data and operations, no gradio: the image, the list of named coloured regions, the
pending clicks, and the latest results of each tab.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import InputError

PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
    (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195),
    (128, 128, 0), (255, 215, 180), (0, 0, 128),
)
UNDO_DEPTH = 10  # clicks that can be taken back (each keeps the regions' masks of its time)


@dataclass
class Region:
    """A named region: a boolean mask at the image size, plus how it was made."""

    name: str
    mask: np.ndarray
    colour: tuple[int, int, int]
    source: str = "click"  # click | box | brush | proposal | example | upload
    points: list[tuple[int, int, int]] = field(default_factory=list)  # (x, y, 1=pos/0=neg)
    box: tuple[int, int, int, int] | None = None
    logits: Any = None  # the segmenter's low-res logits, to refine with the next click

    @property
    def area(self) -> int:
        return int(self.mask.sum())


@dataclass
class Session:
    """Everything one user has: no field is ever shared between sessions."""

    image: np.ndarray | None = None
    image_name: str = ""
    regions: list[Region] = field(default_factory=list)
    active: int | None = None
    pending_corner: tuple[int, int] | None = None
    segmenter: Any = None
    segmenter_key: tuple | None = None
    results: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    counter: int = 0
    # undo: (version before, version after, snapshot) per click, newest last; ``version``
    # counts every change of the regions, so a click is only undone while it is the latest
    undo_stack: list[tuple[int, int, tuple]] = field(default_factory=list)
    version: int = 0
    notices_shown: set[str] = field(default_factory=set)  # kept across images
    # per-image work worth keeping while the image stays (the Grounding tab's automatic
    # candidates: proposals cost 1-15 s on a 448 px scene with the classical engine)
    image_cache: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ image
    def set_image(self, image: np.ndarray, name: str = "image") -> None:
        """A new image: every region, result and cached embedding is dropped."""
        self.image = np.ascontiguousarray(image)
        self.image_name = name
        self.regions = []
        self.active = None
        self.pending_corner = None
        self.segmenter = None
        self.segmenter_key = None
        self.results = {}
        self.image_cache = {}
        self.counter = 0
        self.undo_stack = []
        self.version += 1

    def require_image(self) -> np.ndarray:
        if self.image is None:
            raise InputError("no image yet: upload one, paste one, or pick an example")
        return self.image

    @property
    def size(self) -> tuple[int, int]:
        img = self.require_image()
        return img.shape[0], img.shape[1]

    # ---------------------------------------------------------------- regions
    def next_colour(self) -> tuple[int, int, int]:
        used = {r.colour for r in self.regions}
        for c in PALETTE:
            if c not in used:
                return c
        return PALETTE[len(self.regions) % len(PALETTE)]

    def add_region(self, mask: np.ndarray, source: str, name: str | None = None, **kw) -> Region:
        h, w = self.size
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (h, w):
            raise InputError(f"region mask is {mask.shape[1]}x{mask.shape[0]}, image is {w}x{h}")
        from ..config import LIMITS

        if len(self.regions) >= LIMITS.max_masks:
            raise InputError(f"at most {LIMITS.max_masks} regions per image; delete some first")
        self.counter += 1
        region = Region(name or f"region {self.counter}", mask, self.next_colour(), source, **kw)
        self.regions.append(region)
        self.active = len(self.regions) - 1
        self.results.pop("invert", None)
        self.version += 1
        return region

    def update_region(self, index: int, mask: np.ndarray, points, logits=None) -> Region:
        """Region ``index`` refined by a click: its new mask, clicks and segmenter logits."""
        region = self.regions[index]
        region.mask, region.points, region.logits = np.asarray(mask, bool), list(points), logits
        self.results.pop("invert", None)
        self.version += 1
        return region

    def index_of(self, name: str | None) -> int:
        for i, r in enumerate(self.regions):
            if r.name == name:
                return i
        raise InputError(f"no region named {name!r}")

    def select(self, name: str | None) -> None:
        self.active = None if not name else self.index_of(name)
        self.pending_corner = None

    def rename(self, name: str | None, new_name: str) -> None:
        from ..inputs import check_text

        new_name = check_text(new_name, "region name", max_chars=60)
        i = self.index_of(name)
        if any(r.name == new_name for j, r in enumerate(self.regions) if j != i):
            raise InputError(f"a region named {new_name!r} already exists")
        self.regions[i].name = new_name
        self.version += 1

    def delete(self, name: str | None) -> None:
        i = self.index_of(name)
        del self.regions[i]
        self.active = (len(self.regions) - 1) if self.regions else None
        self.results.pop("invert", None)
        self.version += 1

    def clear_regions(self) -> None:
        self.regions = []
        self.active = None
        self.pending_corner = None
        self.results = {}
        self.version += 1

    # ------------------------------------------------------------------- undo
    def _snapshot(self) -> tuple:
        regions = [replace(r, points=list(r.points)) for r in self.regions]
        return regions, self.active, self.pending_corner, self.counter

    def begin_click(self) -> tuple[int, tuple]:
        """The state before a click (pass it to :meth:`end_click` once the click changed it)."""
        return self.version, self._snapshot()

    def end_click(self, before: tuple[int, tuple]) -> None:
        """Record a finished click so that :meth:`undo` can take it back."""
        version, snapshot = before
        self.version += 1  # a box's first corner changes no region, but is a click too
        self.undo_stack.append((version, self.version, snapshot))
        del self.undo_stack[:-UNDO_DEPTH]

    def can_undo(self) -> bool:
        return bool(self.undo_stack) and self.undo_stack[-1][1] == self.version

    def undo(self) -> None:
        """Take back the latest click (a new region, an Include/Exclude refinement or a box
        corner): the regions return to what they were before it. Only clicks are undone, and
        only while nothing else (rename, delete, proposals, brush ...) changed the regions
        since."""
        if not self.undo_stack:
            raise InputError("nothing to undo: Undo takes back clicks on the image")
        if not self.can_undo():
            self.undo_stack = []
            raise InputError("nothing to undo: the regions changed in another way since the "
                             "last click (Undo takes back clicks only)")
        version, _, (regions, active, corner, counter) = self.undo_stack.pop()
        self.regions, self.active, self.pending_corner, self.counter = (
            regions, active, corner, counter)
        self.results.pop("invert", None)
        self.version = version

    # ---------------------------------------------------------------- notices
    def first_notice(self, text: str | None) -> bool:
        """True the first time this session is told ``text`` (then False: a notice such as
        "no SAM checkpoint" is shown once per session, not once per image)."""
        if not text or text in self.notices_shown:
            return False
        self.notices_shown.add(text)
        return True

    def active_region(self) -> Region | None:
        if self.active is None or not 0 <= self.active < len(self.regions):
            return None
        return self.regions[self.active]

    def masks(self) -> np.ndarray:
        """All region masks (P, H, W); refuses when there is none."""
        if not self.regions:
            raise InputError("no regions yet: click on the image, draw a box, paint, or "
                             "add automatic proposals")
        return np.stack([r.mask for r in self.regions])

    def names(self) -> list[str]:
        return [r.name for r in self.regions]
