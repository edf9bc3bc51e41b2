"""Can the Hugging Face hub be reached? Decided without the hub client's retries.

``huggingface_hub`` retries an unreachable hub for about a minute before it gives up, and a
user who chose a model that is not in the cache would wait that long for an error. RegionLab
decides first, cheaply:

1. the offline environment variables (``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``): offline;
2. otherwise ONE ``HEAD`` request to the hub's endpoint (``HF_ENDPOINT``, through the
   environment's proxies), run in a daemon thread and abandoned after ``PROBE_TIMEOUT_S``
   seconds (so a hanging DNS lookup or TLS handshake is bounded too). Any HTTP answer counts as
   reachable. The answer is cached per process for ``PROBE_TTL_S`` seconds.

Only when the hub answers does a loader let the hub client download.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request

PROBE_TIMEOUT_S = 2.0
PROBE_TTL_S = 60.0
_TRUE = {"1", "on", "yes", "true"}

_LOCK = threading.Lock()
_CACHE: dict[str, tuple[float, bool, str]] = {}


def offline_reason() -> str | None:
    """Why the hub must not be used (an offline variable is set), or None."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return f"{var} is set"
    try:
        from huggingface_hub import constants
    except ImportError:
        return None
    if getattr(constants, "HF_HUB_OFFLINE", False):
        return "huggingface_hub is in offline mode"
    return None


def _endpoint() -> str:
    try:
        from huggingface_hub import constants

        return constants.ENDPOINT
    except (ImportError, AttributeError):
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _request(url: str, timeout: float) -> None:
    """One HEAD request to ``url`` (through the environment's proxies, like the hub client).
    Any HTTP answer, an error status included, means the server is there; raises OSError
    (``URLError``, timeout) when nothing answered."""
    req = urllib.request.Request(url, method="HEAD")
    try:
        urllib.request.urlopen(req, timeout=timeout).close()
    except urllib.error.HTTPError:
        pass


def _probe(url: str, timeout: float) -> str | None:
    """None when ``url`` answered within ``timeout`` s, else why not."""
    result: list[str | None] = []

    def run() -> None:
        try:
            _request(url, timeout)
            result.append(None)
        except Exception as exc:  # DNS failure, refused, unreachable, timed out
            result.append(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)

    worker = threading.Thread(target=run, name="regionlab-hub-probe", daemon=True)
    worker.start()
    worker.join(timeout)
    if not result:
        return f"no answer within {timeout:g} s"
    return result[0]


def hub_status(url: str | None = None, timeout: float | None = None) -> tuple[bool, str]:
    """(may the hub be used now?, why). At most one probe per endpoint per ``PROBE_TTL_S``."""
    reason = offline_reason()
    if reason:
        return False, f"the hub is not used ({reason})"
    url = url or _endpoint()
    now = time.monotonic()
    with _LOCK:
        hit = _CACHE.get(url)
        if hit and now - hit[0] < PROBE_TTL_S:
            return hit[1], hit[2]
        error = _probe(url, PROBE_TIMEOUT_S if timeout is None else timeout)
        ok = error is None
        why = f"{url} answered" if ok else f"the hub is unreachable ({url}: {error})"
        _CACHE[url] = (time.monotonic(), ok, why)
    return ok, why


def forget() -> None:
    """Drop the cached probe answers (the next :func:`hub_status` probes again)."""
    with _LOCK:
        _CACHE.clear()
