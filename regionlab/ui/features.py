"""Which task modules this build has: each feature is imported lazily, by name, at call time.

A tab whose module is missing says so ("not available in this build") instead of faking a
result; the check is repeated on every call, so nothing is cached at module level.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable

from ..errors import ModelUnavailableError

# feature -> candidate (module, attribute) pairs, first found wins
FEATURES: dict[str, tuple[tuple[str, str], ...]] = {
    "segment": (("regionlab.segment.interactive", "make_segmenter"),),
    "proposals": (("regionlab.segment.proposals", "generate_proposals"),),
    "invert": (("regionlab.region.maskinversion", "invert"),),
    "baselines": (("regionlab.region.baselines", "region_embeddings"),),
    "legrad": (("regionlab.explain.legrad", "legrad_maps"),),
    "retrieve": (("regionlab.tasks.retrieval", "retrieve"),),
    "ground": (("regionlab.tasks.reclip", "ground"),),
    "label": (("regionlab.tasks.ovseg", "label"),),
    "caption": (("regionlab.tasks.caption", "caption_regions"),),
    "generate": (("regionlab.tasks.generate", "generate_regions"),),
}


class FeatureUnavailable(ModelUnavailableError):
    """A task module is not part of this build."""


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def probe(feature: str) -> tuple[bool, str]:
    """(is the feature in this build?, why not / where it comes from). Imports nothing heavy
    unless the module file exists."""
    tried = []
    for mod, attr in FEATURES[feature]:
        tried.append(f"{mod}.{attr}")
        if not _module_exists(mod):
            continue
        try:
            module = importlib.import_module(mod)
        except Exception as exc:  # a module that fails to import is reported, not raised
            return False, f"{mod} failed to import: {type(exc).__name__}: {exc}"
        if hasattr(module, attr):
            return True, f"{mod}.{attr}"
    return False, f"not available in this build (no {' or '.join(tried)})"


def require(feature: str) -> Callable:
    """The function implementing ``feature``, or :class:`FeatureUnavailable`."""
    ok, why = probe(feature)
    if not ok:
        raise FeatureUnavailable(f"{feature}: {why}")
    mod, attr = why.rsplit(".", 1)
    return getattr(importlib.import_module(mod), attr)


def module_of(feature: str):
    """The module implementing ``feature`` (for its helpers and result types)."""
    ok, why = probe(feature)
    if not ok:
        raise FeatureUnavailable(f"{feature}: {why}")
    return importlib.import_module(why.rsplit(".", 1)[0])
