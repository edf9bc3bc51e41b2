import pytest
import torch

from regionlab import models
from regionlab.errors import ModelUnavailableError


def test_list_models_marks_availability():
    infos = models.list_models("clip")
    names = [m.name for m in infos]
    assert names[0] == "shapes-clip"
    for real in (
        "ViT-B-16@openai",
        "ViT-B-32@openai",
        "ViT-L-14@openai",
        "ViT-H-14@laion2b_s32b_b79k",
        "ViT-B-16@laion2b_s34b_b88k",
    ):
        assert real in names
    real = next(m for m in infos if m.name == "ViT-B-16@openai")
    assert real.available is False and "hf download" in real.reason


def test_real_model_offline_gives_specific_error():
    with pytest.raises(ModelUnavailableError) as exc:
        models.load("ViT-B-16@openai", "clip")
    msg = str(exc.value)
    assert "ViT-B-16@openai" in msg and "openai" in msg and "hf download" in msg


def test_adhoc_spec_with_missing_local_path(tmp_path):
    name = f"ViT-B-16@{tmp_path / 'nope.pt'}"
    spec = models.get_spec(name, "clip")
    ok, why = spec.available()
    assert not ok and "not found" in why
    with pytest.raises(ModelUnavailableError, match="nope.pt"):
        models.load(name, "clip")


def test_adhoc_local_checkpoint_loads_with_weights_only(tmp_path):
    import open_clip

    model = open_clip.create_model("ViT-B-32", pretrained=None)
    path = tmp_path / "w.pt"
    torch.save(model.state_dict(), path)
    clip = models.load(f"ViT-B-32@{path}", "clip")
    assert clip.embed_dim == 512 and clip.image_size == 224
    emb = clip.encode_texts(["a photo of a cat"])
    assert emb.shape == (1, 512)


def test_unknown_model_lists_known_ones():
    with pytest.raises(ModelUnavailableError, match="shapes-clip"):
        models.get_spec("no-such-model", "clip")


def test_device_policy(monkeypatch):
    monkeypatch.setenv("REGIONLAB_DEVICE", "cpu")
    assert models.resolve_device().type == "cpu"
    assert models.default_dtype("clip", torch.device("cpu")) == torch.float32
    if not torch.cuda.is_available():
        with pytest.raises(ModelUnavailableError, match="CUDA"):
            models.resolve_device("cuda")


def test_choose_default_falls_back_with_notice():
    name, notice = models.choose_default("clip", "ViT-B-16@openai", "shapes-clip")
    assert name == "shapes-clip" and "ViT-B-16@openai" in notice and "not available" in notice


def test_load_is_cached_and_thread_safe():
    import threading

    out = []
    ts = [
        threading.Thread(target=lambda: out.append(models.load_clip("shapes-clip")))
        for _ in range(4)
    ]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert len({id(o) for o in out}) == 1
    assert not any(p.requires_grad for p in out[0].model.parameters())


def test_public_api_surface():
    import regionlab

    assert "shapes-clip" in [m.name for m in regionlab.models.list_models("clip")]
    for name in ("load_clip", "invert", "retrieve", "region_embeddings", "legrad_maps", "ground",
                 "label"):
        assert callable(getattr(regionlab, name))
    with pytest.raises(AttributeError):
        regionlab.no_such_thing  # noqa: B018
