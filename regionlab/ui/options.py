"""App options (from flags and environment), resolved once at start-up; immutable."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import InputError, ModelUnavailableError

KIND_LABELS = {"clip": "CLIP", "sam": "Segmenter (SAM)", "captioner": "Captioner",
               "generator": "Generator"}


@dataclass(frozen=True)
class AppOptions:
    """What the app runs with. ``None`` for sam/captioner/generator: the task's own default
    (the offline fallback when no weights are present)."""

    clip: str = "shapes-clip"
    sam: str | None = None
    captioner: str | None = None
    generator: str | None = None
    device: str | None = None
    concurrency: int = 1
    session_ttl_s: int = 3 * 3600
    cache_age_s: int = 3600
    notices: tuple[str, ...] = ()

    def model(self, kind: str) -> str | None:
        return getattr(self, kind)


def _available(kind: str, name: str) -> tuple[bool, str]:
    from ..models import get_spec

    try:
        return get_spec(name, kind).available()
    except (ModelUnavailableError, ValueError) as exc:
        return False, str(exc)


def resolve_options(clip: str | None = None, sam: str | None = None,
                    captioner: str | None = None, generator: str | None = None,
                    device: str | None = None, concurrency: int | None = None) -> AppOptions:
    """Requested models if available, else the bundled/fallback ones, with a visible notice
    for every substitution (never a silent switch)."""
    from ..models import DEFAULT_CLIP, choose_default, resolve_device

    notices = []
    clip_name, notice = choose_default("clip", clip or os.environ.get("REGIONLAB_CLIP"),
                                       DEFAULT_CLIP)
    if notice:
        notices.append(notice)
    ok, why = _available("clip", clip_name)
    if not ok:
        notices.append(f"The bundled CLIP is not available ({why}): model features will "
                       f"report errors until it is installed.")
    picked = {}
    for kind, requested in (("sam", sam or os.environ.get("REGIONLAB_SAM")),
                            ("captioner", captioner), ("generator", generator)):
        picked[kind] = None
        if requested:
            ok, why = (True, "") if (kind, requested) == ("sam", "classical") else \
                _available(kind, requested)
            if ok:
                picked[kind] = requested
            else:
                notices.append(f"{KIND_LABELS[kind]} {requested!r} is not available ({why}); "
                               f"using the built-in default.")
    dev = None
    if device:
        try:
            dev = str(resolve_device(device))
        except ModelUnavailableError as exc:
            notices.append(f"{exc}; using {resolve_device(None)}.")
    conc = int(concurrency or os.environ.get("REGIONLAB_CONCURRENCY") or 1)
    return AppOptions(clip=clip_name, device=dev, concurrency=max(1, conc),
                      notices=tuple(notices), **picked)


def model_choices(kind: str, options: AppOptions) -> list[tuple[str, str]]:
    """(label, name) for every registered model of ``kind`` that is not a test fixture; the
    label says whether it is available."""
    from ..models import get_spec, list_models

    out = []
    for info in list_models(kind):
        if get_spec(info.name).extra.get("testing"):
            continue
        mark = "" if info.available else " (not available)"
        out.append((f"{info.name}{mark}", info.name))
    if kind == "sam":
        out.append(("classical (offline fallback)", "classical"))
    current = options.model(kind)
    if current and current not in [n for _, n in out]:
        out.insert(0, (current, current))
    return out


def check_model(kind: str, name: str | None, options: AppOptions) -> str | None:
    """A model name chosen in the UI or the API: only registered names (or the one the server
    was started with) are accepted, so no user string can make the server read a path."""
    from ..models import list_model_names

    if name is None or (isinstance(name, str) and not name.strip()):
        return options.model(kind)
    name = str(name).strip()
    extra = ["classical", "auto"] if kind == "sam" else []
    if name == options.model(kind) or name in list_model_names(kind) or name in extra:
        return name
    raise InputError(f"unknown {kind} model {name!r}; choose one of "
                     f"{[options.model(kind)] + list_model_names(kind)}")
