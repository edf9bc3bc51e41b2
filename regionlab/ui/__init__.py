"""The Gradio app (the only package that imports gradio).

>>> from regionlab.ui import build_app, launch_kwargs, resolve_options
>>> demo = build_app(resolve_options())            # doctest: +SKIP
>>> demo.launch(**launch_kwargs())                  # doctest: +SKIP
"""

from __future__ import annotations

from .options import AppOptions, resolve_options


def build_app(options: AppOptions | None = None):
    """The Blocks app (imports gradio lazily)."""
    from .layout import build_app as _build

    return _build(options)


def launch_kwargs() -> dict:
    from .layout import launch_kwargs as _kw

    return _kw()


__all__ = ["AppOptions", "build_app", "launch_kwargs", "resolve_options"]
