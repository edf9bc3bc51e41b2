"""Captioners: CLIPCap checkpoints (tiny random GPT-2), the bundled ShapesWorld captioner,
bad input, CLIP matching, the task function and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from regionlab.errors import InputError, ModelUnavailableError
from regionlab.models.captioner import (
    SHAPES_CAPTIONER,
    CaptionOptions,
    HFCodec,
    LoadedCaptioner,
    PrefixCaptioner,
    ShapesCodec,
    clipcap_spec,
    read_prefix_captioner,
    save_prefix_captioner,
)

EMBED = 24


def tiny_gpt2_config(vocab: int, width: int = 32):
    from transformers import GPT2Config

    return GPT2Config(vocab_size=vocab, n_positions=32, n_embd=width, n_layer=2, n_head=2,
                      bos_token_id=None, eos_token_id=None)


@pytest.fixture(scope="module")
def gpt2_tokenizer_dir(tmp_path_factory):
    """A tiny byte-level BPE tokenizer in GPT-2's format, saved like a hub folder."""
    from transformers import GPT2TokenizerFast

    words = ["a", "Ġa", "Ġred", "Ġblue", "Ġstar", "Ġcircle", ".", "Ġ"]
    vocab = {"<|endoftext|>": 0, **{w: i + 1 for i, w in enumerate(words)}}
    folder = tmp_path_factory.mktemp("gpt2tok")
    GPT2TokenizerFast(vocab=vocab, merges=[]).save_pretrained(folder)
    return folder


def clipcap_state(seed: int = 0, prefix_length: int = 3, vocab: int = 9) -> dict:
    """A state dict in the layout of a CLIPCap MLP checkpoint (with legacy mask buffers)."""
    from transformers import GPT2LMHeadModel

    torch.manual_seed(seed)
    gpt = GPT2LMHeadModel(tiny_gpt2_config(vocab))
    width = 32
    mlp = torch.nn.Sequential(torch.nn.Linear(EMBED, 40), torch.nn.Tanh(),
                              torch.nn.Linear(40, width * prefix_length))
    state = {f"clip_project.model.{k}": v for k, v in mlp.state_dict().items()}
    state.update({f"gpt.{k}": v for k, v in gpt.state_dict().items()})
    for i in range(2):  # what older transformers versions stored as persistent buffers
        state[f"gpt.transformer.h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, 32, 32))
        state[f"gpt.transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    return state


@pytest.fixture(scope="module")
def clipcap_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("clipcap") / "tiny_clipcap.pt"
    torch.save(clipcap_state(), path)
    return path


def load_spec(spec):
    return spec.loader(spec, torch.device("cpu"), torch.float32)


def test_clipcap_checkpoint_loads_and_matches_weights(clipcap_file, gpt2_tokenizer_dir):
    spec = clipcap_spec("tiny-clipcap", clipcap_file, clip="shapes-clip",
                        tokenizer=str(gpt2_tokenizer_dir))
    assert spec.available()[0]
    cap = load_spec(spec)
    state = clipcap_state()
    assert cap.model.prefix_length == 3 and cap.embed_dim == EMBED
    e = torch.randn(2, EMBED)
    mlp = torch.nn.Sequential(torch.nn.Linear(EMBED, 40), torch.nn.Tanh(),
                              torch.nn.Linear(40, 96))
    mlp.load_state_dict({k.removeprefix("clip_project.model."): v for k, v in state.items()
                         if k.startswith("clip_project.model.")})
    torch.testing.assert_close(cap.model.prefix(e), mlp(e).view(2, 3, 32))
    torch.testing.assert_close(cap.model.gpt.transformer.wte.weight,
                               state["gpt.transformer.wte.weight"])
    # captions are strings made of the tokenizer's pieces; beam search is deterministic
    texts = cap.caption(e, CaptionOptions(beams=3, max_tokens=6))
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert texts == cap.caption(e, CaptionOptions(beams=3, max_tokens=6))
    assert isinstance(cap.caption(e[0]), str)


def test_clipcap_decoding_stops_at_full_stop(gpt2_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gpt2_tokenizer_dir)
    codec = HFCodec(tok)
    dot = codec.encode(".")[0]
    assert dot in codec.eos_ids and tok.eos_token_id in codec.eos_ids
    ids = tok.convert_tokens_to_ids(["Ġa", "Ġred", "Ġstar", ".", "Ġblue"])
    assert codec.decode(ids) == "a red star."


def test_sampling_is_reproducible_by_seed(clipcap_file, gpt2_tokenizer_dir):
    cap = load_spec(clipcap_spec("t", clipcap_file, clip="shapes-clip",
                                 tokenizer=str(gpt2_tokenizer_dir)))
    e = torch.randn(4, EMBED)
    a = cap.caption(e, CaptionOptions(sample=True, seed=3, max_tokens=8))
    b = cap.caption(e, CaptionOptions(sample=True, seed=3, max_tokens=8))
    many = {tuple(cap.caption(e, CaptionOptions(sample=True, seed=s, max_tokens=8)))
            for s in range(6)}
    assert a == b
    assert len(many) > 1  # different seeds, different samples (random tiny model)


def test_unsafe_and_foreign_checkpoints_are_refused(tmp_path, gpt2_tokenizer_dir):
    import argparse

    pickled = tmp_path / "pickled.pt"
    torch.save({"obj": argparse.Namespace(x=1)}, pickled)  # not plain tensors: refused
    with pytest.raises(ModelUnavailableError, match="weights_only"):
        load_spec(clipcap_spec("p", pickled, tokenizer=str(gpt2_tokenizer_dir)))
    transformer_mapper = tmp_path / "tm.pt"
    torch.save({"clip_project.linear.weight": torch.zeros(2, 2),
                "clip_project.transformer.layers.0.norm1.weight": torch.zeros(2),
                **{k: v for k, v in clipcap_state().items() if k.startswith("gpt.")}},
               transformer_mapper)
    with pytest.raises(ModelUnavailableError, match="transformer mapping network"):
        load_spec(clipcap_spec("t", transformer_mapper, tokenizer=str(gpt2_tokenizer_dir)))
    missing = clipcap_spec("m", tmp_path / "nope.pt")
    assert not missing.available()[0]
    with pytest.raises(ModelUnavailableError, match="not found"):
        load_spec(missing)


def test_missing_tokenizer_says_how_to_get_it(clipcap_file, tmp_path):
    spec = clipcap_spec("t", clipcap_file, tokenizer=str(tmp_path / "no-tokenizer-here"))
    ok, why = spec.available()
    assert not ok and "tokenizer" in why
    with pytest.raises(ModelUnavailableError, match="hf download"):
        load_spec(spec)


def tiny_shapes_captioner(seed: int = 0) -> LoadedCaptioner:
    codec = ShapesCodec()
    torch.manual_seed(seed)
    model = PrefixCaptioner(EMBED, 2, tiny_gpt2_config(codec.vocab_size)).eval()
    return LoadedCaptioner("tiny", model, codec, "shapes-clip", EMBED, 1.0,
                           torch.device("cpu"), torch.float32)


def test_regionlab_format_round_trip(tmp_path):
    cap = tiny_shapes_captioner()
    path = tmp_path / "cap.safetensors"
    save_prefix_captioner(cap.model, path, clip="shapes-clip", tokenizer="shapes",
                          metadata={"seed": 0})
    model, config = read_prefix_captioner(path)
    assert config["clip"] == "shapes-clip" and config["prefix_length"] == 2
    e = torch.randn(3, EMBED)
    with torch.no_grad():
        torch.testing.assert_close(model.prefix(e), cap.model.prefix(e), atol=2e-2, rtol=1e-2)
    from regionlab.models import get_spec

    spec = get_spec(f"prefix@{path}", "captioner")
    loaded = load_spec(spec)
    assert loaded.clip == "shapes-clip" and loaded.embed_dim == EMBED


def test_shapes_codec_round_trip():
    codec = ShapesCodec()
    ids = codec.encode("An orange star.")
    assert ids[-1] in codec.eos_ids
    assert codec.decode(ids) == "an orange star."
    assert codec.decode([0, *codec.encode("a red cross"), 5, 6]) == "a red cross"


@pytest.mark.parametrize("bad", [
    np.zeros(EMBED + 1), np.zeros((2, 7)), np.zeros((1, 2, EMBED)), np.zeros((0, EMBED)),
    np.full(EMBED, np.nan), np.zeros(EMBED), "text",
])
def test_bad_embeddings_are_refused(bad):
    cap = tiny_shapes_captioner()
    with pytest.raises(InputError):
        cap.caption(bad)


def test_wrong_dimension_names_the_expected_clip():
    cap = tiny_shapes_captioner()
    expected = r"dimension 24 from CLIP 'shapes-clip'.*got dimension 512"
    with pytest.raises(InputError, match=expected):
        cap.caption(np.ones(512, dtype=np.float32))


def test_too_many_embeddings_are_refused():
    with pytest.raises(InputError, match="limit"):
        tiny_shapes_captioner().caption(np.ones((1000, EMBED)))


@pytest.mark.parametrize("opts", [
    CaptionOptions(beams=0), CaptionOptions(beams=100), CaptionOptions(temperature=float("nan")),
    CaptionOptions(temperature=0), CaptionOptions(top_p=0), CaptionOptions(max_tokens=0),
    CaptionOptions(max_tokens=10_000), CaptionOptions(seed=-1), CaptionOptions(beams=2.5),
])
def test_bad_options_are_refused(opts):
    with pytest.raises(InputError):
        tiny_shapes_captioner().caption(np.ones(EMBED), opts)


def test_clip_matching_rules():
    from regionlab.models.decoder_clip import clip_mismatch

    assert clip_mismatch("ViT-B-32@openai", "ViT-B-32@openai") is None
    assert clip_mismatch("ViT-B-32@openai", "ViT-B-32@/models/b32.pt") is None  # a local copy
    assert "architecture" in clip_mismatch("ViT-B-32@openai", "ViT-L-14@openai")
    assert "weights" in clip_mismatch("ViT-B-32@openai", "ViT-B-32@laion2b_s34b_b79k")
    assert clip_mismatch("shapes-clip", "ViT-B-32@openai")


# ------------------------------------------------------------ with the bundled models

needs_assets = pytest.mark.skipif(not SHAPES_CAPTIONER.is_file(),
                                  reason="bundled shapes captioner not trained yet")


def scene_and_masks():
    from regionlab.shapes.scenes import RenderOptions, render_scene

    scene = render_scene((2, 7, 3), RenderOptions(min_objects=2, max_objects=3))
    return scene, [o.mask for o in scene.objects]


def test_caption_regions_refuses_a_foreign_clip():
    from regionlab.tasks.caption import caption_regions

    scene, masks = scene_and_masks()
    with pytest.raises(InputError, match="reads image embeddings of CLIP 'shapes-clip'"):
        caption_regions(scene.image, masks, captioner=tiny_shapes_captioner(),
                        clip="ViT-B-32@openai", method="global")


@needs_assets
def test_bundled_captioner_names_single_objects():
    from regionlab.models import load, load_clip
    from regionlab.shapes.scenes import RenderOptions, render_scene

    cap = load("shapes-captioner", "captioner")
    clip = load_clip("shapes-clip")
    scenes = [render_scene((1, 0, 500 + i), RenderOptions(min_objects=1, max_objects=1,
                                                           scale=(0.2, 0.4)))
              for i in range(20)]
    texts = cap.caption(clip.encode_images([s.image for s in scenes]))
    right = [t.endswith(s.objects[0].label) for t, s in zip(texts, scenes)]
    assert np.mean(right) >= 0.7, list(zip(texts, [s.objects[0].label for s in scenes]))


@needs_assets
def test_caption_regions_and_cli(tmp_path, capsys):
    from regionlab.cli import main
    from regionlab.tasks.caption import caption_regions

    scene, masks = scene_and_masks()
    res = caption_regions(scene.image, masks, method="masked-crop")
    assert len(res.captions) == len(masks) and res.clip == "shapes-clip"
    img = tmp_path / "scene.png"
    Image.fromarray(scene.image).save(img)
    paths = []
    for i, m in enumerate(masks):
        paths.append(tmp_path / f"m{i}.png")
        Image.fromarray(m.astype(np.uint8) * 255).save(paths[-1])
    argv = ["caption", str(img), *sum([["--mask", str(p)] for p in paths], []),
            "--method", "masked-crop", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["captions"] == res.captions
    assert main(["caption", str(img), "--mask", str(paths[0]), "--method", "global",
                 "--model", "ViT-B-32@openai", "--json"]) == 2
    assert "shapes-clip" in json.loads(capsys.readouterr().out)["error"]


@needs_assets
def test_default_caption_is_the_top_beam_and_reranking_is_asked_for(tmp_path, capsys):
    """RERANK_WEIGHT 0 (the tuning rule's choice for the shipped captioner): the default is
    the top beam and says so (``reranked`` False); a weight reranks, in the API and the CLI."""
    from regionlab.cli import main
    from regionlab.tasks.caption import RERANK_WEIGHT, caption_regions

    assert RERANK_WEIGHT == 0
    scene, masks = scene_and_masks()
    default = caption_regions(scene.image, masks, method="masked-crop")
    top = caption_regions(scene.image, masks, method="masked-crop", rerank=False)
    weighted = caption_regions(scene.image, masks, method="masked-crop", rerank_weight=2.0)
    assert default.captions == top.captions and not default.reranked and not top.reranked
    assert weighted.reranked and len(weighted.captions) == len(masks)
    img, mask = tmp_path / "scene.png", tmp_path / "m.png"
    Image.fromarray(scene.image).save(img)
    Image.fromarray(masks[0].astype(np.uint8) * 255).save(mask)
    base = ["caption", str(img), "--mask", str(mask), "--method", "masked-crop", "--json"]
    assert main(base + ["--rerank-weight", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["reranked"] is True
    assert main(base + ["--rerank-weight", "2", "--no-rerank"]) == 0
    assert json.loads(capsys.readouterr().out)["reranked"] is False
    assert main(base + ["--rerank-weight", "-1"]) == 2
    assert "rerank_weight" in json.loads(capsys.readouterr().out)["error"]


class _TextClip:
    """encode_texts by a fixed table: lets the reranking rule be checked by hand."""

    logit_scale = 10.0

    def __init__(self, table: dict[str, list[float]]):
        self.table = table

    def encode_texts(self, texts):
        return torch.nn.functional.normalize(torch.tensor([self.table[t] for t in texts]), dim=-1)


def test_rerank_balances_the_captioner_and_clip():
    """score = log p + weight * logit_scale * cos; weight 0 keeps the top beam."""
    from regionlab.tasks.caption import rerank_captions

    clip = _TextClip({"a red cross": [0.0, 1.0], "a red star": [1.0, 0.0],
                      "a red a red star star": [1.0, 0.05]})
    emb = np.array([[1.0, 0.1]], np.float32)  # closest to "a red star"
    cands = [[("a red cross", -0.1), ("a red star", -0.5), ("a red a red star star", -3.0)]]
    assert rerank_captions(emb, cands, clip, 0.0) == ["a red cross"]
    # 10 * (cos star - cos cross) = 10 * (0.995 - 0.0995) = 8.96 > 0.4: the star wins
    assert rerank_captions(emb, cands, clip, 1.0) == ["a red star"]
    # the degenerate caption is about as close in CLIP's space, and far less probable
    assert rerank_captions(emb, cands, clip, 4.0) == ["a red star"]
    # a tiny weight cannot overturn a clear captioner preference
    assert rerank_captions(emb, cands, clip, 0.01) == ["a red cross"]


def test_bundled_captions_name_what_retrieval_finds():
    """Issue 27 item 5 on the app's example scenes: the caption (the default: the top beam)
    of each object's masked-crop embedding names retrieval's top-1 class."""
    from regionlab.models import get_spec, load_clip
    from regionlab.region.baselines import region_embeddings
    from regionlab.shapes.vocab import CLASSES
    from regionlab.tasks.caption import caption_embeddings, load_captioner
    from regionlab.tasks.retrieval import retrieve
    from regionlab.ui import examples

    for kind in ("clip", "captioner"):
        ok, why = get_spec(f"shapes-{kind}", kind).available()
        if not ok:
            pytest.skip(f"bundled {kind} not available: {why}")
    clip, cap = load_clip("shapes-clip"), load_captioner()
    agree = n = 0
    for seed in examples.SCENE_SEEDS:
        sc = examples.scene(seed)
        emb = region_embeddings(clip, sc.image, [o.mask for o in sc.objects], "masked-crop")
        emb = np.asarray(emb.detach().float())
        top = [t[0]["label"] for t in retrieve(emb, "shapes", clip=clip, top_k=1)]
        for caption, label in zip(caption_embeddings(emb, cap), top):
            named = [c for c in CLASSES if c in caption]
            agree += named == [label]
            n += 1
    assert n >= 20 and agree == n, (agree, n)
