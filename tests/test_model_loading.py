"""Loading models: a model that cannot be had fails fast with its specific message, and trained
weights load without open_clip's false "initialized randomly" warning (issue 25, items 1-2).

No test touches the network: the hub is offline (HF_HUB_OFFLINE=1 from conftest), or "the hub"
is a server on 127.0.0.1 that accepts connections and never answers.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest
import torch
from PIL import Image

from regionlab import models
from regionlab.errors import ModelUnavailableError
from regionlab.models import hub

REAL = "ViT-B-16@openai"
RANDOM_INIT = "initialized randomly"


@pytest.fixture
def online(monkeypatch):
    """The offline variables unset (as on a user's machine), probe answers forgotten."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hub.forget()
    yield
    hub.forget()


@pytest.fixture
def silent_hub(online, monkeypatch):
    """The hub endpoint is a 127.0.0.1 server that accepts connections and never answers, and
    the offline variables are unset: only the probe's timeout can decide."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    conns, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    monkeypatch.setattr(hub, "_endpoint", lambda: url)
    yield url, conns
    stop.set()
    thread.join(2)
    for c in conns:
        c.close()
    server.close()


def _assert_specific(msg: str) -> None:
    """The message names the model, the source tried and how to provide it."""
    assert REAL in msg and "source openai" in msg
    assert "not in the Hugging Face cache (timm/vit_base_patch16_clip_224.openai)" in msg
    assert "hf download timm/vit_base_patch16_clip_224.openai" in msg
    assert "nothing was downloaded" in msg


def test_offline_hub_model_fails_fast_from_the_api():
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as exc:
        models.load_clip(REAL)
    seconds = time.perf_counter() - t0
    _assert_specific(str(exc.value))
    assert "HF_HUB_OFFLINE is set" in str(exc.value)
    assert seconds < 5, seconds


def test_offline_hub_model_fails_fast_from_the_cli(tmp_path, capsys):
    from regionlab.cli import main
    from regionlab.shapes.scenes import render_scene

    img = tmp_path / "scene.png"
    Image.fromarray(render_scene(7).image).save(img)
    t0 = time.perf_counter()
    rc = main(["classify", str(img), "--vocab", "shapes", "--model", REAL])
    seconds = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("regionlab classify: error: cannot load CLIP model 'ViT-B-16@openai'")
    _assert_specific(err)
    assert seconds < 5, seconds


def test_unanswering_hub_fails_within_the_probe_timeout(silent_hub):
    url, conns = silent_hub
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as exc:
        models.load_clip(REAL)
    seconds = time.perf_counter() - t0
    msg = str(exc.value)
    _assert_specific(msg)
    assert f"the hub is unreachable ({url}: no answer within 2 s)" in msg
    assert seconds < 5, seconds
    assert len(conns) == 1  # the probe did connect to the silent hub
    # the answer is cached: a second try fails at once, without a second probe
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match="no answer within 2 s"):
        models.load_clip("ViT-L-14@laion2b_s32b_b82k")
    assert time.perf_counter() - t0 < 1
    assert len(conns) == 1


def test_probe_says_why(online):
    with socket.socket() as s:  # a port that refuses connections
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ok, why = hub.hub_status(f"http://127.0.0.1:{port}")
    assert not ok and "unreachable" in why and "Connection refused" in why


def test_offline_variables_skip_the_probe(monkeypatch):
    def fail(url, timeout):
        raise AssertionError("probed although offline")

    monkeypatch.setattr(hub, "_request", fail)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.hub_status() == (False, "the hub is not used (HF_HUB_OFFLINE is set)")


def _random_init_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if RANDOM_INIT in r.getMessage()]


def test_bundled_clip_loads_without_random_init_warning(caplog, capfd):
    models.clear_cache()
    with caplog.at_level(logging.INFO):
        clip = models.load_clip("shapes-clip")
    assert clip.name == "shapes-clip"
    assert _random_init_lines(caplog) == []
    out, err = capfd.readouterr()
    assert RANDOM_INIT not in out + err
    # the filter is narrow: a model that really is random still says so
    with caplog.at_level(logging.WARNING):
        from regionlab.shapes.model import build_model

        build_model()
    assert len(_random_init_lines(caplog)) == 1


def test_cached_tag_and_local_file_load_without_hub_or_warning(tmp_path, monkeypatch, caplog):
    """A tag whose weights are in the Hugging Face cache loads from the file (no hub request;
    conftest's guard fails any connect), with the tag's QuickGELU; no random-init warning."""
    import open_clip
    from open_clip.transformer import QuickGELU

    from regionlab.models import clip as clip_mod

    state = open_clip.create_model("ViT-B-32", pretrained=None).state_dict()
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(state, path)
    monkeypatch.setattr(clip_mod, "_hf_cached", lambda repo, filename=None: str(path))
    monkeypatch.setattr(hub, "_request", lambda url, timeout: pytest.fail("probed the hub"))
    models.clear_cache()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        loaded = models.load_clip("ViT-B-32@openai")
        local = models.load_clip(f"ViT-B-32@{path}")
    assert _random_init_lines(caplog) == []
    acts = {type(m) for m in loaded.model.modules()}
    assert QuickGELU in acts  # the OpenAI weights were trained with QuickGELU
    assert torch.equal(loaded.model.state_dict()["visual.proj"], state["visual.proj"])
    assert torch.equal(local.model.state_dict()["visual.proj"], state["visual.proj"])
    models.clear_cache()
