"""Glue between gradio events and the pure functions: error translation and progress.

Every rejection becomes a ``gr.Error`` with the library's specific message; the server keeps
serving. Unexpected exceptions are logged with their traceback and reported briefly.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import gradio as gr

from ..errors import InputError, ModelUnavailableError, RegionLabError, ResourceError
from ..tasks.vocabularies import BUILTIN

log = logging.getLogger("regionlab.ui")


def ui_errors(fn: Callable) -> Callable:
    """Turn RegionLab errors into ``gr.Error`` (keeps the signature for gradio)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except InputError as exc:
            raise gr.Error(str(exc), title="Invalid input", print_exception=False) from None
        except ModelUnavailableError as exc:
            raise gr.Error(str(exc), title="Not available", print_exception=False) from None
        except ResourceError as exc:
            raise gr.Error(str(exc), title="Out of resources") from None
        except RegionLabError as exc:
            raise gr.Error(str(exc)) from None
        except Exception as exc:
            log.exception("unexpected error in %s", getattr(fn, "__name__", fn))
            raise gr.Error(f"internal error ({type(exc).__name__}); the server logged the "
                           f"details", title="Error") from None

    return wrapper


def progress_fn(progress: gr.Progress | None):
    """A ``(fraction, text)`` callback for the pure functions, driving ``gr.Progress``."""
    if progress is None:
        return None

    def report(frac: float, what: str) -> None:
        try:
            progress(min(max(float(frac), 0.0), 1.0), desc=what)
        except Exception:  # progress is best effort (e.g. outside a queued event)
            pass

    return report


def safe_vocab(text) -> str | list[str]:
    """A vocabulary from the UI/API: a built-in name or a comma-separated class list. File
    paths are never read from user strings."""
    from ..inputs import check_classes

    if isinstance(text, (list, tuple)):
        return check_classes(list(text))
    if not isinstance(text, str) or not text.strip():
        raise InputError("the vocabulary is empty: give a built-in name "
                         f"({', '.join(BUILTIN)}) or a comma-separated class list")
    key = text.strip().lower()
    if key in BUILTIN:
        return key
    return check_classes(text)
