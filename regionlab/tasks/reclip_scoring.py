"""Scoring a parse tree over boxes (METHODS.md 3.2): predicates, relations, superlatives.

Pairwise ``S[i, j]`` over (P, 4) boxes ``x0, y0, x1, y1`` (diagonal 0); an entity's distribution
is ``IPS(entity text)``, multiplied by each relation's ``r = S q`` and narrowed by each
superlative (:func:`execute_tree`).
"""

from __future__ import annotations

import numpy as np

from .reclip_tree import ParseTree, Relation, Superlative
from .reclip_words import (
    ABOVE,
    BELOW,
    BETWEEN,
    BIGGER,
    CONTAINS,
    FAR,
    LEFT,
    MIDDLE,
    NEAR,
    RIGHT,
    SHORTER,
    SMALLER,
    TALLER,
    WITHIN,
)

# ------------------------------------------------------------------------------ predicates


def box_geometry(boxes: np.ndarray) -> dict[str, np.ndarray]:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return {"cx": (b[:, 0] + b[:, 2]) / 2, "cy": (b[:, 1] + b[:, 3]) / 2,
            "area": np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None),
            "boxes": b}


def relation_matrix(predicate: str, boxes: np.ndarray, image_size: tuple[int, int],
                    weights: np.ndarray | None = None) -> np.ndarray:
    """Pairwise ``S[i, j]`` of a binary predicate over (P, 4) boxes ``x0, y0, x1, y1``; diagonal 0.

    ``image_size`` is (H, W) (scale of ``near``); ``weights`` (p over boxes) only for ``middle``.
    """
    g = box_geometry(boxes)
    cx, cy, area, b = g["cx"], g["cy"], g["area"], g["boxes"]
    n = len(cx)
    if predicate == LEFT:
        s = cx[:, None] < cx[None, :]
    elif predicate == RIGHT:
        s = cx[:, None] > cx[None, :]
    elif predicate == ABOVE:
        s = cy[:, None] < cy[None, :]
    elif predicate == BELOW:
        s = cy[:, None] > cy[None, :]
    elif predicate in (TALLER, SHORTER):
        height = b[:, 3] - b[:, 1]
        s = (height[:, None] > height[None, :]) if predicate == TALLER else (
            height[:, None] < height[None, :])
    elif predicate == BIGGER:
        s = area[:, None] > area[None, :]
    elif predicate == SMALLER:
        s = area[:, None] < area[None, :]
    elif predicate in (WITHIN, CONTAINS):
        iw = np.clip(np.minimum(b[:, None, 2], b[None, :, 2])
                     - np.maximum(b[:, None, 0], b[None, :, 0]), 0, None)
        ih = np.clip(np.minimum(b[:, None, 3], b[None, :, 3])
                     - np.maximum(b[:, None, 1], b[None, :, 1]), 0, None)
        inter = iw * ih
        s = inter / np.maximum(area[:, None], 1e-9)
        if predicate == CONTAINS:
            s = s.T
    elif predicate in (NEAR, FAR):
        d = np.hypot(cx[:, None] - cx[None, :], cy[:, None] - cy[None, :])
        off = ~np.eye(n, dtype=bool)
        if predicate == NEAR:
            scale = 0.1 * float(np.hypot(*image_size))
            dmin = np.where(off, d, np.inf).min(axis=0, keepdims=True) if n > 1 else d
            s = np.exp(-(d - dmin) / max(scale, 1e-9))
        else:
            dmax = np.where(off, d, 0).max(axis=0, keepdims=True)
            s = d / np.maximum(dmax, 1e-9)
    elif predicate == MIDDLE:
        w = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, dtype=np.float64)
        w = w / max(w.sum(), 1e-12)
        dc = np.hypot(cx - (w * cx).sum(), cy - (w * cy).sum())
        s = dc[:, None] < dc[None, :]
    else:
        raise ValueError(f"unknown predicate {predicate!r}")
    s = np.asarray(s, dtype=np.float64)
    np.fill_diagonal(s, 0.0)
    return s


def between_tensor(boxes: np.ndarray) -> np.ndarray:
    """``B[i, j, k]``: how much box i lies between boxes j and k (0 unless its centre projects
    strictly inside the segment j-k; then 1 - perpendicular distance / |jk|, floored at 0)."""
    g = box_geometry(boxes)
    c = np.stack([g["cx"], g["cy"]], axis=1)
    n = len(c)
    seg = c[None, None, :, :] - c[None, :, None, :]  # (1, j, k, 2): c_k - c_j
    rel = c[:, None, None, :] - c[None, :, None, :]  # (i, j, 1, 2): c_i - c_j
    length2 = (seg ** 2).sum(-1)  # (1, j, k)
    t = (rel * seg).sum(-1) / np.maximum(length2, 1e-12)
    perp = np.abs(rel[..., 0] * seg[..., 1] - rel[..., 1] * seg[..., 0]) / np.sqrt(
        np.maximum(length2, 1e-12))
    out = ((t > 0) & (t < 1)) * np.clip(1 - perp / np.sqrt(np.maximum(length2, 1e-12)), 0, 1)
    idx = np.arange(n)
    out[idx, idx, :] = 0
    out[idx, :, idx] = 0
    out[:, idx, idx] = 0
    return out


def _normalise(p: np.ndarray) -> np.ndarray | None:
    s = p.sum()
    return p / s if s > 0 and np.isfinite(s) else None


def apply_relation(p: np.ndarray, relation: Relation, target_probs: list[np.ndarray],
                   boxes: np.ndarray, image_size: tuple[int, int]) -> tuple[np.ndarray, str | None]:
    """``p <- normalise(p * r)``, ``r[i] = sum_j S[i, j] q[j]`` (between: ``sum B[i,j,k] q1 q2``).

    Returns the new p and a note when the product vanished (then p is kept)."""
    if relation.predicate == BETWEEN:
        q1 = target_probs[0]
        q2 = target_probs[1] if len(target_probs) > 1 else q1
        r = np.einsum("ijk,j,k->i", between_tensor(boxes), q1, q2)
    else:
        s = relation_matrix(relation.predicate, boxes, image_size)
        if relation.negated:
            s = 1.0 - s
            np.fill_diagonal(s, 0.0)
        r = s @ target_probs[0]
    new = _normalise(p * r)
    if new is None:
        return p, f"relation {relation.predicate} matched no proposal: ignored"
    return new, None


def apply_superlative(p: np.ndarray, sup: Superlative, boxes: np.ndarray,
                      image_size: tuple[int, int],
                      include_self: bool = False) -> tuple[np.ndarray, str | None]:
    """Reference (rank 1): ``p[i] <- normalise(p[i] * sum_j p[j] S[i, j])``.

    ``include_self`` (ours, rank 1): ``p[i] <- normalise(p[i] * (p[i] + sum_j p[j] S[i, j]))``,
    the chance that i is at least as far to that side as a member drawn from p, itself
    included. The reference's sum leaves i out, so a single confident member scores
    ``p[i] * (almost nothing)`` and ties with any non-member beyond it ("the red shape on the
    right" with one red shape picked the yellow cross to its right).

    Negated (ours, "not on the left"): ``p[i] <- normalise(p[i] * (1 - s[i] / max s))`` with
    ``s`` the superlative's result. Rank k > 1 (ours): with candidate weights
    ``c = min(1, p / (0.1 max p))`` and
    ``n_i = sum_j c_j S[j, i]`` (candidates further to that side than i),
    ``p[i] <- normalise(p[i] * exp(-(n_i - (k - 1))^2 / 0.5))``."""
    s = relation_matrix(sup.predicate, boxes, image_size, weights=p)
    if sup.rank <= 1:
        new = _normalise(p * ((s @ p) + (p if include_self else 0.0)))
    else:
        c = np.minimum(1.0, p / max(0.1 * p.max(), 1e-30))
        n_better = s.T @ c
        new = _normalise(p * np.exp(-((n_better - (sup.rank - 1)) ** 2) / 0.5))
    if sup.negated and new is not None:  # "not on the left": every candidate but the extreme
        new = _normalise(p * (1.0 - new / new.max()))
    if new is None:
        return p, f"superlative {sup.name} left no candidate: ignored"
    return new, None


def execute_tree(tree: ParseTree, ips: dict[int, np.ndarray], boxes: np.ndarray,
                 image_size: tuple[int, int],
                 include_self: bool = False) -> tuple[dict[int, np.ndarray], list[str]]:
    """Every entity's distribution over the P proposals (METHODS.md 3.2); ``include_self``
    as in :func:`apply_superlative`.

    ``ips[e]`` is IPS(entity e's text); a generic entity ("the shape") is missing (uniform)
    or given the uniform distribution over the proposals still allowed (area prior,
    objectness filter). Returns ({entity id: p}, notes); the head's p is ``result[0]``."""
    n = len(np.asarray(boxes).reshape(-1, 4))
    out: dict[int, np.ndarray] = {}
    notes: list[str] = []

    def dist(eid: int, stack: tuple) -> np.ndarray:
        if eid in out:
            return out[eid]
        node = tree.entities[eid]
        base = ips.get(eid)
        p = np.full(n, 1.0 / n) if base is None else np.asarray(base, float)
        p = p / p.sum()
        for rel in node.relations:
            if rel.predicate is None or any(t in stack for t in rel.targets):
                continue
            qs = [dist(t, (*stack, eid)) for t in rel.targets]
            p, note = apply_relation(p, rel, qs, boxes, image_size)
            if note:
                notes.append(f"entity {eid}: {note}")
        for sup in node.superlatives:
            p, note = apply_superlative(p, sup, boxes, image_size, include_self)
            if note:
                notes.append(f"entity {eid}: {note}")
        out[eid] = p
        return p

    for e in tree.entities:
        dist(e.id, ())
    return out, notes
