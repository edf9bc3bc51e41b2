"""Choosing a model in Settings never holds the shared model queue, and a model that cannot be
had fails within seconds (issue 25, item 1). Two gradio_client sessions against the app
in-process on 127.0.0.1; "the hub" is a stub that does not answer (no network is touched).
"""

from __future__ import annotations

import threading
import time

import pytest
from PIL import Image

from regionlab.models import hub

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

REAL = "ViT-B-16@openai"


@pytest.fixture(scope="module")
def app():
    from app_server import running_app

    with running_app() as demo:
        yield demo


@pytest.fixture(scope="module")
def scene24(tmp_path_factory):
    from regionlab.ui.examples import scene

    sc = scene(24)
    path = tmp_path_factory.mktemp("scene") / "scene24.png"
    Image.fromarray(sc.image).save(path)
    star = next(o for o in sc.objects if o.label == "red star")
    return str(path), [int(round(v)) for v in star.center]


@pytest.fixture
def hanging_hub(monkeypatch):
    """Offline variables unset; the hub probe blocks until released (or its timeout)."""
    from huggingface_hub import constants

    started, released = threading.Event(), threading.Event()

    def no_answer(url, timeout):
        started.set()
        released.wait(timeout + 5)  # longer than the probe waits: the probe's timeout decides
        raise TimeoutError("timed out")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_request", no_answer)
    hub.forget()
    yield started, released
    released.set()
    hub.forget()


def test_loading_a_model_does_not_hold_other_sessions(app, scene24, hanging_hub, monkeypatch):
    started, released = hanging_hub
    monkeypatch.setattr(hub, "PROBE_TIMEOUT_S", 60.0)  # A's load waits until released
    path, (cx, cy) = scene24
    a = Client(app.local_url, verbose=False)
    b = Client(app.local_url, verbose=False)
    job = a.submit(REAL, "cpu", api_name="/session_clip_defaults")  # Settings: choose a CLIP
    assert started.wait(60), "session A's model load never reached the hub probe"
    # session B's model call (the shared model queue, one call at a time) is served meanwhile
    masks, info = b.predict(handle_file(path), [[cx, cy, 1]], None, True, api_name="/segment")
    assert masks and info["backend"]
    assert not job.done(), "session A's load finished first: B was not served meanwhile"
    released.set()
    with pytest.raises(Exception, match="cannot load CLIP model 'ViT-B-16@openai'") as exc:
        job.result(timeout=60)
    assert "the hub is unreachable" in str(exc.value) and "hf download" in str(exc.value)


def test_unavailable_model_in_settings_fails_within_5_s(app, hanging_hub):
    """With the default 2 s probe timeout, the error reaches the client within 5 s."""
    client = Client(app.local_url, verbose=False)
    t0 = time.perf_counter()
    with pytest.raises(Exception, match="no answer within 2 s") as exc:
        client.predict(REAL, "cpu", api_name="/session_clip_defaults")
    seconds = time.perf_counter() - t0
    assert "cannot load CLIP model 'ViT-B-16@openai'" in str(exc.value)
    assert seconds < 5, seconds
