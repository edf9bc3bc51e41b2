"""Referring expressions for ShapesWorld scenes, with their targets (deterministic by seed).

Three kinds, so results can be split by kind:

- ``attribute``: the object is unique by its words alone ("the red circle", "the star",
  "the green object");
- ``relation``: two objects share the target's words and a third, uniquely named object
  decides ("the red circle left of the blue square"); subtypes left_of/right_of/above/below;
- ``superlative``: two or three objects share the words and an extreme decides ("the leftmost
  red circle", "the biggest star"); subtypes leftmost/rightmost/topmost/bottommost/biggest/
  smallest;
- ``everyday``: the same questions in everyday phrasing that the three kinds above never use
  (a phrasing shift): negation ("the red star not on the left"), paraphrased superlatives ("the
  highest", "farthest to the right", "the tallest"), ordinals ("the second ... from the left",
  "the middle ..."), distance to an anchor ("closest to the blue circle", "farthest from ..."),
  and a generic head ("the biggest shape", "the shape above the blue circle").

Scenes come from any of the three renderers (``renderer="pil"``, ``"cv"`` or ``"mpl"``, see
:mod:`regionlab.shapes.renderers`).

Geometry is judged on box centres and areas (the quantities ReCLIP's predicates use) with
margins (``MARGIN_PX`` between centres, ``AREA_RATIO`` between areas, on both the box and the
mask area) so every expression has exactly one right answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .renderers import RENDERERS, render
from .scenes import SPLITS, RenderOptions, Scene
from .vocab import COLOUR_NAMES, SHAPES

KINDS = ("attribute", "relation", "superlative")
#: Superlatives over one shape in several colours, named by the shape alone ("the biggest
#: circle" among a red and a blue circle): the app's example scenes ask these, and the bare
#: shape name is the bundled CLIP's weakest word (its own set, so the sets above are unchanged).
SHAPE_SUPERLATIVE = "shape-superlative"
ALL_KINDS = (*KINDS, "everyday", SHAPE_SUPERLATIVE)
#: Phrasings kept out of all tuning and parser development (a phrasing shift set): measured,
#: never fixed against.
UNSEEN = "unseen"
MARGIN_PX = 3.0
AREA_RATIO = 1.3
RELATION_PHRASES = {
    "left_of": ("{t} left of {r}", "{t} to the left of {r}", "{t} on the left of {r}"),
    "right_of": ("{t} right of {r}", "{t} to the right of {r}"),
    "above": ("{t} above {r}", "{t} over {r}"),
    "below": ("{t} below {r}", "{t} under {r}", "{t} beneath {r}"),
}
SUPERLATIVE_PHRASES = {
    "leftmost": ("the leftmost {d}", "the {d} on the left"),
    "rightmost": ("the rightmost {d}", "the {d} on the right"),
    "topmost": ("the topmost {d}", "the {d} at the top"),
    "bottommost": ("the bottommost {d}", "the {d} at the bottom"),
    "biggest": ("the biggest {d}", "the largest {d}"),
    "smallest": ("the smallest {d}",),
}


@dataclass(frozen=True)
class ReferringExpression:
    """``target`` indexes ``scene.objects``; ``reference`` is the related object (relations);
    ``distractors`` are the other objects matching the target's words."""

    text: str
    target: int
    kind: str
    subtype: str
    reference: int | None = None
    distractors: tuple[int, ...] = ()


@dataclass
class RECItem:
    """One scene with its expressions; ``boxes`` are the ground-truth proposals."""

    scene: Scene
    expressions: list[ReferringExpression]
    index: int

    @property
    def boxes(self) -> np.ndarray:
        return np.asarray([o.box for o in self.scene.objects], dtype=np.float64)


def _centres(scene: Scene) -> np.ndarray:
    return np.asarray([((o.box[0] + o.box[2]) / 2, (o.box[1] + o.box[3]) / 2)
                       for o in scene.objects])


def _box_areas(scene: Scene) -> np.ndarray:
    return np.asarray([(o.box[2] - o.box[0]) * (o.box[3] - o.box[1]) for o in scene.objects],
                      dtype=np.float64)


def unique_description(scene: Scene, i: int) -> tuple[str, str] | None:
    """The shortest words naming object ``i`` alone: (text, subtype) or None."""
    objs = scene.objects
    o = objs[i]
    same_shape = [j for j, p in enumerate(objs) if p.shape == o.shape]
    same_colour = [j for j, p in enumerate(objs) if p.colour == o.colour]
    same_class = [j for j, p in enumerate(objs) if p.label == o.label]
    if len(same_shape) == 1:
        return f"the {o.shape}", "shape"
    if len(same_colour) == 1:
        return f"the {o.colour} object", "colour"
    if len(same_class) == 1:
        return f"the {o.label}", "colour+shape"
    return None


def attribute_expressions(scene: Scene, rng: np.random.Generator) -> list[ReferringExpression]:
    """One expression per uniquely describable object; a random choice of the ways to say it
    when several are unique (colour+shape is always allowed then)."""
    out = []
    for i, o in enumerate(scene.objects):
        d = unique_description(scene, i)
        if d is None:
            continue
        text, sub = d
        if sub != "colour+shape" and rng.uniform() < 0.5:
            text, sub = f"the {o.label}", "colour+shape"
        out.append(ReferringExpression(text, i, "attribute", sub))
    return out


def _relation_holds(pred: str, c: np.ndarray, a: int, b: int, margin: float) -> bool:
    dx, dy = c[b, 0] - c[a, 0], c[b, 1] - c[a, 1]
    return {"left_of": dx > margin, "right_of": -dx > margin, "above": dy > margin,
            "below": -dy > margin}[pred]


def _relation_item(scene: Scene, rng) -> list[ReferringExpression]:
    objs = scene.objects
    c = _centres(scene)
    labels = [o.label for o in objs]
    out = []
    for t, ot in enumerate(objs):
        group = [j for j, lab in enumerate(labels) if lab == ot.label]
        if len(group) < 2:
            continue
        for r, orf in enumerate(objs):
            if labels.count(orf.label) != 1:
                continue
            preds = [p for p in RELATION_PHRASES if _relation_holds(p, c, t, r, MARGIN_PX)
                     and not any(_relation_holds(p, c, d, r, -MARGIN_PX)
                                 for d in group if d != t)]
            for p in preds:
                ref = (f"the {orf.shape}" if [o.shape for o in objs].count(orf.shape) == 1
                       and rng.uniform() < 0.5 else f"the {orf.label}")
                phrase = RELATION_PHRASES[p][rng.integers(len(RELATION_PHRASES[p]))]
                text = phrase.format(t=f"the {ot.label}", r=ref)
                out.append(ReferringExpression(text, t, "relation", p, r,
                                               tuple(d for d in group if d != t)))
    return out


def _superlative_item(scene: Scene, rng, by_shape: bool = False) -> list[ReferringExpression]:
    """Superlatives within each group of two or more objects of one class (``by_shape``: of
    one shape, whatever their colours, named by the shape alone)."""
    objs = scene.objects
    c = _centres(scene)
    box_area = _box_areas(scene)
    mask_area = np.asarray([o.area for o in objs], dtype=np.float64)
    labels = [o.shape if by_shape else o.label for o in objs]
    out = []
    for label in dict.fromkeys(labels):
        group = [j for j, lab in enumerate(labels) if lab == label]
        if len(group) < 2:
            continue
        g = np.asarray(group)
        checks = {
            "leftmost": (c[g, 0], False, MARGIN_PX), "rightmost": (c[g, 0], True, MARGIN_PX),
            "topmost": (c[g, 1], False, MARGIN_PX), "bottommost": (c[g, 1], True, MARGIN_PX),
        }
        for name, (vals, largest, margin) in checks.items():
            order = np.argsort(-vals if largest else vals)
            if abs(vals[order[0]] - vals[order[1]]) > margin:
                out.append((name, int(g[order[0]])))
        for name, largest in (("biggest", True), ("smallest", False)):
            ok = True
            for areas in (box_area[g], mask_area[g]):
                order = np.argsort(-areas if largest else areas)
                a0, a1 = areas[order[0]], areas[order[1]]
                ok &= (a0 >= AREA_RATIO * a1) if largest else (a1 >= AREA_RATIO * a0)
            best = int(g[np.argmax(box_area[g]) if largest else np.argmin(box_area[g])])
            best_mask = int(g[np.argmax(mask_area[g]) if largest else np.argmin(mask_area[g])])
            if ok and best == best_mask:
                out.append((name, best))
    exprs = []
    for name, t in out:
        phrases = SUPERLATIVE_PHRASES[name]
        text = phrases[rng.integers(len(phrases))].format(d=labels[t])
        others = tuple(j for j, lab in enumerate(labels) if lab == labels[t] and j != t)
        exprs.append(ReferringExpression(text, t, SHAPE_SUPERLATIVE if by_shape
                                         else "superlative", name, None, others))
    return exprs


NEGATED = {"leftmost": "right", "rightmost": "left", "topmost": "bottom", "bottommost": "top"}
PARAPHRASES = {
    "leftmost": ("the {d} farthest to the left", "the {d} furthest to the left",
                 "the {d} on the far left"),
    "rightmost": ("the {d} farthest to the right", "the {d} furthest to the right",
                  "the {d} on the far right"),
    "topmost": ("the highest {d}", "the uppermost {d}", "the {d} highest up"),
    "bottommost": ("the lowest {d}", "the {d} lowest down", "the {d} nearest the bottom"),
    "tallest": ("the tallest {d}",),
    "shortest": ("the shortest {d}",),
}
SIDES = {"left": (0, False), "right": (0, True), "top": (1, False), "bottom": (1, True)}
#: The everyday phrasings (tuned on their validation scenes).
EVERYDAY_BOOK = {
    **PARAPHRASES,
    "negation": ("the {d} not on the {s}", "the {d} that is not on the {s}"),
    "second": ("the second {d} from the {s}", "the {d} second from the {s}"),
    "third": ("the third {d} from the {s}",),
    "middle": ("the middle {d}",),
    "nearest": ("the {d} closest to the {r}", "the {d} nearest to the {r}",
                "the {d} nearest the {r}", "the {d} next to the {r}"),
    "farthest": ("the {d} farthest from the {r}",),
    "biggest": ("the biggest shape",),
    "smallest": ("the smallest shape",),
    "above": ("the shape above the {r}",),
}
#: Other words for the same questions, written once (2026-12-06) and never tuned on.
UNSEEN_BOOK = {
    "leftmost": ("the {d} that is furthest left", "the {d} at the far left",
                 "the {d} closest to the left edge"),
    "rightmost": ("the {d} that is furthest right", "the {d} at the far right",
                  "the {d} closest to the right edge"),
    "topmost": ("the {d} nearest the top", "the {d} that sits highest", "the top {d}"),
    "bottommost": ("the {d} at the very bottom", "the bottom {d}", "the {d} that sits lowest"),
    "tallest": ("the {d} that is tallest",),
    "shortest": ("the {d} that is shortest",),
    "negation": ("the {d} that isn't on the {s}", "the {d} which is not on the {s} side"),
    "second": ("the {d} in second position from the {s}", "the 2nd {d} from the {s}"),
    "third": ("the 3rd {d} from the {s}", "the {d} third from the {s}"),
    "middle": ("the {d} in the middle", "the centre {d}"),
    "nearest": ("the {d} by the {r}", "the {d} beside the {r}", "the {d} right next to the {r}"),
    "farthest": ("the {d} furthest away from the {r}", "the {d} farthest away from the {r}"),
    "biggest": ("the largest shape", "the biggest object", "the largest one"),
    "smallest": ("the smallest object", "the tiniest shape", "the smallest one"),
    "above": ("the object above the {r}", "the shape over the {r}"),
}


def _extreme(values: np.ndarray, largest: bool, margin: float) -> int | None:
    """Index of the clear extreme of ``values`` (by ``margin`` over the runner-up), or None."""
    order = np.argsort(-values if largest else values)
    if len(values) < 2 or abs(values[order[0]] - values[order[1]]) > margin:
        return int(order[0])
    return None


def _everyday_item(scene: Scene, rng, book: dict = EVERYDAY_BOOK,
                   kind: str = "everyday") -> list[ReferringExpression]:
    objs = scene.objects

    def say(key: str, **fields) -> str:
        options = book[key]  # one option: no random draw (keeps every other draw in place)
        pick = 0 if len(options) == 1 else rng.integers(len(options))
        return options[pick].format(**fields)

    c = _centres(scene)
    heights = np.asarray([o.box[3] - o.box[1] for o in objs], dtype=np.float64)
    areas = _box_areas(scene)
    labels = [o.label for o in objs]
    out: list[ReferringExpression] = []

    def add(text: str, t: int, sub: str, ref: int | None = None) -> None:
        others = tuple(j for j, lab in enumerate(labels) if lab == labels[t] and j != t)
        out.append(ReferringExpression(text, t, kind, sub, ref, others))

    for label in dict.fromkeys(labels):
        g = np.asarray([j for j, lab in enumerate(labels) if lab == label])
        if len(g) < 2:
            continue
        for name, (axis, largest) in SIDES.items():
            sup = {"left": "leftmost", "right": "rightmost", "top": "topmost",
                   "bottom": "bottommost"}[name]
            k = _extreme(c[g, axis], largest, MARGIN_PX)
            if k is None:
                continue
            add(say(sup, d=label), int(g[k]), f"paraphrase/{sup}")
            if len(g) == 2:  # the other one is "not on the <side>"
                add(say("negation", d=label, s=name), int(g[1 - k]), f"negation/{sup}")
        for name, largest in (("tallest", True), ("shortest", False)):
            hk = _extreme(heights[g], largest, 0)
            if hk is not None:
                hs = np.sort(heights[g])
                if (hs[-1] >= AREA_RATIO * hs[-2]) if largest else (hs[1] >= AREA_RATIO * hs[0]):
                    add(say(name, d=label), int(g[hk]), f"paraphrase/{name}")
        if len(g) == 3:
            xs = c[g, 0]
            order = np.argsort(xs)
            if np.diff(xs[order]).min() > MARGIN_PX:
                side = ("left", "right")[rng.integers(2)]
                second = int(g[order[1]])
                add(say("second", d=label, s=side), second, "ordinal/second")
                third = int(g[order[2] if side == "left" else order[0]])
                add(say("third", d=label, s=side), third, "ordinal/third")
                centroid = c[g].mean(axis=0)
                dc = np.hypot(*(c[g] - centroid).T)
                if int(np.argmin(dc)) == int(order[1]) and np.sort(dc)[1] - dc.min() > MARGIN_PX:
                    add(say("middle", d=label), second, "ordinal/middle")
        for r, orf in enumerate(objs):
            if labels.count(orf.label) != 1:
                continue
            d = np.hypot(*(c[g] - c[r]).T)
            ds = np.sort(d)
            if ds[1] >= AREA_RATIO * ds[0] and ds[1] - ds[0] > MARGIN_PX:
                add(say("nearest", d=label, r=orf.label), int(g[np.argmin(d)]), "anchor/nearest",
                    r)
            if ds[-1] >= AREA_RATIO * ds[-2] and ds[-1] - ds[-2] > MARGIN_PX:
                add(say("farthest", d=label, r=orf.label), int(g[np.argmax(d)]),
                    "anchor/farthest", r)
    # a generic head: every object is a "shape"
    if len(objs) >= 2:
        a = np.sort(areas)
        if a[-1] >= AREA_RATIO * a[-2]:
            add(say("biggest"), int(np.argmax(areas)), "generic/biggest")
        if a[1] >= AREA_RATIO * a[0]:
            add(say("smallest"), int(np.argmin(areas)), "generic/smallest")
        for r, orf in enumerate(objs):
            if labels.count(orf.label) != 1:
                continue
            above = [j for j in range(len(objs)) if j != r and c[r, 1] - c[j, 1] > MARGIN_PX]
            near_line = [j for j in range(len(objs)) if j != r and c[r, 1] - c[j, 1] > -MARGIN_PX]
            if len(above) == 1 and len(near_line) == 1:
                add(say("above", r=orf.label), above[0], "generic/above", r)
    return out


def _pick_classes(rng, kind: str) -> list[tuple[str, str]]:
    def cls() -> tuple[str, str]:
        return COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))], SHAPES[rng.integers(len(SHAPES))]

    a = cls()
    if kind in ("everyday", UNSEEN):
        objs = [a] * int(rng.choice([2, 3]))
        total = max(len(objs) + 1, int(rng.choice([3, 4, 5])))
        while len(objs) < total:
            b = cls()
            if b != a and b not in objs:
                objs.append(b)
    elif kind == SHAPE_SUPERLATIVE:  # one shape in 2-3 colours, 1-2 objects of other shapes
        colours = rng.permutation(len(COLOUR_NAMES))[:int(rng.choice([2, 2, 3]))]
        objs = [(COLOUR_NAMES[k], a[1]) for k in colours]
        total = len(objs) + int(rng.choice([1, 2]))
        while len(objs) < total:
            b = cls()
            if b[1] != a[1] and b not in objs:
                objs.append(b)
    elif kind == "relation":
        objs = [a, a]
        while len(objs) < 3 + int(rng.uniform() < 0.5):
            b = cls()
            if b != a and b not in objs:
                objs.append(b)
    else:
        objs = [a] * int(rng.choice([2, 2, 3]))
        while len(objs) < int(rng.choice([2, 3, 4])):
            b = cls()
            if b != a:
                objs.append(b)
    order = rng.permutation(len(objs))
    return [objs[k] for k in order]


def _render(renderer: str, key: tuple, options: RenderOptions, objects=None) -> Scene:
    return render(renderer, key, options, objects=objects)


def make_item(kind: str, split: str, index: int, seed: int = 0,
              options: RenderOptions = RenderOptions(), max_attempts: int = 50,
              renderer: str = "pil") -> RECItem:
    """One scene of ``kind`` with its expressions, the same for the same arguments."""
    if kind not in (*ALL_KINDS, UNSEEN):
        raise ValueError(f"unknown expression kind {kind!r}; expected one of "
                         f"{(*ALL_KINDS, UNSEEN)}")
    if renderer not in RENDERERS:
        raise ValueError(f"unknown renderer {renderer!r}; expected one of {RENDERERS}")
    sid = SPLITS[split]
    for attempt in range(max_attempts):
        rng = np.random.default_rng([sid, seed, index, attempt, 17])
        key = (sid, seed, 500_000 + index, attempt)
        if kind == "attribute":
            scene = _render(renderer, key, options)
            exprs = attribute_expressions(scene, rng)
        else:
            wanted = _pick_classes(rng, kind)
            scene = _render(renderer, key, options, objects=wanted)
            if len(scene.objects) != len(wanted):
                continue
            make = {"relation": _relation_item, "superlative": _superlative_item,
                    SHAPE_SUPERLATIVE: lambda sc, r: _superlative_item(sc, r, by_shape=True),
                    "everyday": _everyday_item,
                    UNSEEN: lambda sc, r: _everyday_item(sc, r, UNSEEN_BOOK, UNSEEN)}[kind]
            exprs = make(scene, rng)
        if exprs:
            if kind in ("everyday", UNSEEN):  # up to 4 phrasings (cheap: one forward)
                exprs = [exprs[k] for k in sorted(rng.permutation(len(exprs))[:4])]
            elif kind != "attribute":  # one expression per scene keeps kinds balanced
                exprs = [exprs[rng.integers(len(exprs))]]
            return RECItem(scene, exprs, index)
    raise RuntimeError(f"no {kind} expression after {max_attempts} attempts (index {index})")


def generate_rec_items(split: str = "test", n: int = 300, seed: int = 0,
                       kinds: tuple[str, ...] = KINDS,
                       options: RenderOptions = RenderOptions(),
                       renderer: str = "pil") -> list[RECItem]:
    """``n`` scenes, kinds in turn (scene i has kind ``kinds[i % len(kinds)]``)."""
    return [make_item(kinds[i % len(kinds)], split, i, seed, options, renderer=renderer)
            for i in range(n)]
