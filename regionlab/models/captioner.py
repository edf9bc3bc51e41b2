"""Captioners: a CLIP image (or region) embedding -> text, CLIPCap-style.

A mapping network (MLP: Linear, Tanh, Linear) turns one embedding into ``prefix_length``
GPT-2 input embeddings; GPT-2 (``transformers``) continues the prefix with the caption.
Decoding uses ``transformers``' ``generate`` (beam search or nucleus sampling).

Two weight formats load through the same :class:`PrefixCaptioner`:
- CLIPCap checkpoints (``torch.load(weights_only=True)`` or safetensors) with keys
  ``clip_project.model.{0,2}.*`` (the MLP mapper) and ``gpt.*`` (a ``GPT2LMHeadModel``); the
  GPT-2 configuration is read off the tensor shapes, the tokenizer is GPT-2's (from the Hugging
  Face cache or a local folder). The public COCO / Conceptual Captions MLP checkpoints read
  ViT-B/32 (OpenAI) embeddings, unnormalised.
- RegionLab safetensors (the bundled ShapesWorld captioner): weights plus a JSON config in
  the metadata (GPT-2 config, prefix length, CLIP name, tokenizer).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelUnavailableError
from ..inputs import check_number
from .decoder_clip import as_embeddings
from .registry import ModelSpec, register_adhoc

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "models"
SHAPES_CAPTIONER = ASSETS / "shapes_captioner.safetensors"
MAX_CAPTION_TOKENS = 64
_SAMPLING_LOCK = threading.Lock()  # seeded sampling uses torch's global RNG


@dataclass(frozen=True)
class CaptionOptions:
    """Decoding options. ``sample=False``: beam search with ``beams`` beams (1 = greedy);
    ``sample=True``: nucleus sampling (``top_p``, ``temperature``), reproducible by ``seed``."""

    beams: int = 5  # the candidates that caption reranking chooses from (tasks.caption)
    sample: bool = False
    temperature: float = 1.0
    top_p: float = 0.9
    max_tokens: int = 20
    seed: int = 0

    def checked(self) -> CaptionOptions:
        return CaptionOptions(
            beams=check_number(self.beams, "beams", 1, 16, integer=True),
            sample=bool(self.sample),
            temperature=check_number(self.temperature, "temperature", 0.05, 5.0),
            top_p=check_number(self.top_p, "top_p", 0.01, 1.0),
            max_tokens=check_number(self.max_tokens, "max_tokens", 1, MAX_CAPTION_TOKENS,
                                    integer=True),
            seed=check_number(self.seed, "seed", 0, 2**63 - 1, integer=True),
        )


class PrefixCaptioner(nn.Module):
    """Mapping network (embedding -> prefix of GPT-2 input embeddings) + GPT-2 language model."""

    def __init__(self, embed_dim: int, prefix_length: int, gpt_config, hidden: int | None = None):
        super().__init__()
        from transformers import GPT2LMHeadModel

        width = gpt_config.n_embd
        hidden = hidden or (width * prefix_length) // 2
        self.embed_dim, self.prefix_length = embed_dim, prefix_length
        self.mapper = nn.Sequential(
            nn.Linear(embed_dim, hidden), nn.Tanh(), nn.Linear(hidden, width * prefix_length))
        self.gpt = GPT2LMHeadModel(gpt_config)

    @property
    def width(self) -> int:
        return self.gpt.config.n_embd

    def prefix(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, prefix_length, width)."""
        return self.mapper(embeddings).view(-1, self.prefix_length, self.width)

    def forward(self, embeddings: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits for ``tokens`` (B, T): position i predicts token i, (B, T, V)."""
        wte = self.gpt.transformer.wte(tokens)
        x = torch.cat([self.prefix(embeddings), wte], dim=1)
        logits = self.gpt(inputs_embeds=x).logits
        return logits[:, self.prefix_length - 1 : -1]


class ShapesCodec:
    """Caption text <-> ids with the ShapesWorld word tokenizer (``<eot>`` ends a caption)."""

    def __init__(self):
        from ..shapes.tokenizer import ShapesTokenizer

        self.tok = ShapesTokenizer()
        self.eos_ids = [self.tok.eot_token_id]
        self.pad_id = 0
        self.vocab_size = self.tok.vocab_size

    def encode(self, text: str) -> list[int]:
        return [*self.tok.encode(text), self.tok.eot_token_id]

    def decode(self, ids: list[int]) -> str:
        words = []
        for i in ids:
            if i in self.eos_ids:
                break
            if i in (self.pad_id, self.tok.sot_token_id):
                continue
            words.append(self.tok.vocab[i])
        text = " ".join(words)
        for p in (".", ",", "!", "?", ";", ":"):
            text = text.replace(f" {p}", p)
        return text


class HFCodec:
    """A Hugging Face tokenizer (GPT-2 BPE). CLIPCap captions end at "." or end-of-text."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        dot = tokenizer.encode(".", add_special_tokens=False)
        self.eos_ids = eos + (dot[:1] if len(dot) == 1 else [])
        self.pad_id = self.eos_ids[0] if self.eos_ids else 0
        self.vocab_size = len(tokenizer)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        out = []
        for i in ids:
            out.append(i)
            if i in self.eos_ids:
                break
        special = self.tok.eos_token_id
        return self.tok.decode([i for i in out if i != special], skip_special_tokens=True).strip()


@dataclass
class LoadedCaptioner:
    """A loaded, read-only captioner. ``clip`` names the CLIP whose embeddings it reads;
    ``input_norm``: if set, embeddings are rescaled to this L2 norm before the mapper (None:
    used as given, like CLIPCap)."""

    name: str
    model: PrefixCaptioner
    codec: object
    clip: str
    embed_dim: int
    input_norm: float | None
    device: torch.device
    dtype: torch.dtype

    def caption(self, embeddings, options: CaptionOptions | None = None) -> str | list[str]:
        """One embedding (D,) -> one caption; (B, D) -> B captions."""
        opts = (options or CaptionOptions()).checked()
        emb, single = as_embeddings(embeddings, self.embed_dim, f"captioner {self.name!r}",
                                    self.clip)
        emb = emb.to(self.device, self.dtype)
        if self.input_norm is not None:
            emb = nn.functional.normalize(emb, dim=-1) * self.input_norm
        ids = self._decode(emb, opts)
        texts = [self.codec.decode(row) for row in ids]
        return texts[0] if single else texts

    @torch.no_grad()
    def candidates(self, embeddings, options: CaptionOptions | None = None
                   ) -> list[list[tuple[str, float]]]:
        """The ``beams`` best beam-search captions per embedding (B, D) with their
        length-normalised log-probabilities, best beam first; for reranking
        (:mod:`regionlab.tasks.caption`). Beam search only."""
        from transformers import GenerationConfig

        opts = (options or CaptionOptions()).checked()
        emb, _ = as_embeddings(embeddings, self.embed_dim, f"captioner {self.name!r}", self.clip)
        emb = emb.to(self.device, self.dtype)
        if self.input_norm is not None:
            emb = nn.functional.normalize(emb, dim=-1) * self.input_norm
        k = opts.beams
        prefix = self.model.prefix(emb)
        room = self.model.gpt.config.n_positions - self.model.prefix_length
        gen = GenerationConfig(max_new_tokens=max(1, min(opts.max_tokens, room)),
                               eos_token_id=self.codec.eos_ids, pad_token_id=self.codec.pad_id,
                               bos_token_id=None, do_sample=False, num_beams=k,
                               num_return_sequences=k, output_scores=True,
                               return_dict_in_generate=True)
        mask = torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device)
        out = self.model.gpt.generate(inputs_embeds=prefix, attention_mask=mask,
                                      generation_config=gen)
        texts = [self.codec.decode(row) for row in out.sequences.tolist()]
        scores = out.sequences_scores.float().cpu().tolist()
        return [list(zip(texts[i * k:(i + 1) * k], scores[i * k:(i + 1) * k]))
                for i in range(len(emb))]

    @torch.no_grad()
    def _decode(self, emb: torch.Tensor, opts: CaptionOptions) -> list[list[int]]:
        from transformers import GenerationConfig

        prefix = self.model.prefix(emb)
        room = self.model.gpt.config.n_positions - self.model.prefix_length
        cfg = dict(max_new_tokens=max(1, min(opts.max_tokens, room)),
                   eos_token_id=self.codec.eos_ids, pad_token_id=self.codec.pad_id,
                   bos_token_id=None)
        if opts.sample:
            cfg.update(do_sample=True, num_beams=1, top_p=opts.top_p,
                       temperature=opts.temperature, top_k=0)
        else:
            cfg.update(do_sample=False, num_beams=opts.beams)
        gen = GenerationConfig(**cfg)
        mask = torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device)
        if opts.sample:
            with _SAMPLING_LOCK, torch.random.fork_rng(devices=[]):
                torch.manual_seed(opts.seed)
                out = self.model.gpt.generate(inputs_embeds=prefix, attention_mask=mask,
                                              generation_config=gen)
        else:
            out = self.model.gpt.generate(inputs_embeds=prefix, attention_mask=mask,
                                          generation_config=gen)
        return out.tolist()


# ------------------------------------------------------------------ weight formats


def gpt2_config_from_state(state: dict, prefix: str = "gpt."):
    """A ``GPT2Config`` read off a GPT-2 state dict's tensor shapes (heads: width / 64, the
    GPT-2 convention)."""
    from transformers import GPT2Config

    wte = state[f"{prefix}transformer.wte.weight"]
    wpe = state[f"{prefix}transformer.wpe.weight"]
    layers = {int(k[len(prefix):].split(".")[2]) for k in state
              if k.startswith(f"{prefix}transformer.h.")}
    width, vocab = int(wte.shape[1]), int(wte.shape[0])
    special = 50256 if vocab > 50256 else None  # GPT-2's <|endoftext|>
    return GPT2Config(vocab_size=vocab, n_positions=int(wpe.shape[0]), n_embd=width,
                      n_layer=len(layers), n_head=max(1, width // 64), bos_token_id=special,
                      eos_token_id=special)


def load_state_dict_file(path: Path) -> dict:
    """Safe loading of a user-supplied checkpoint: safetensors, or torch.load(weights_only)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelUnavailableError(
            f"cannot read checkpoint {path} safely (torch.load weights_only=True): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise ModelUnavailableError(f"checkpoint {path} does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def clipcap_from_state(state: dict) -> PrefixCaptioner:
    """Build a :class:`PrefixCaptioner` from a CLIPCap MLP-mapper state dict."""
    if any(k.startswith(("clip_project.transformer", "clip_project.linear")) for k in state):
        raise ModelUnavailableError(
            "this CLIPCap checkpoint uses the transformer mapping network, which RegionLab does "
            "not support; use a checkpoint trained with the MLP mapper (e.g. the COCO or "
            "Conceptual Captions weights)")
    needed = ["clip_project.model.0.weight", "clip_project.model.2.weight",
              "gpt.transformer.wte.weight"]
    missing = [k for k in needed if k not in state]
    if missing:
        raise ModelUnavailableError(f"not a CLIPCap checkpoint: missing {', '.join(missing)}")
    cfg = gpt2_config_from_state(state)
    w0, w2 = state["clip_project.model.0.weight"], state["clip_project.model.2.weight"]
    prefix_length, rem = divmod(int(w2.shape[0]), cfg.n_embd)
    if rem:
        raise ModelUnavailableError(
            f"CLIPCap mapper output {w2.shape[0]} is not a multiple of GPT-2 width {cfg.n_embd}")
    model = PrefixCaptioner(int(w0.shape[1]), prefix_length, cfg, hidden=int(w0.shape[0]))
    mapped = {("mapper." + k[len("clip_project.model."):]) if k.startswith("clip_project.model.")
              else k: v for k, v in state.items()}
    own = model.state_dict()
    # older transformers saved causal-mask buffers (attn.bias, attn.masked_bias): not weights
    mapped = {k: v for k, v in mapped.items()
              if k in own or not k.endswith((".attn.bias", ".attn.masked_bias"))}
    if "gpt.lm_head.weight" not in mapped:
        mapped["gpt.lm_head.weight"] = mapped["gpt.transformer.wte.weight"]
    result = model.load_state_dict({k: v.float() for k, v in mapped.items()}, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModelUnavailableError(
            f"CLIPCap checkpoint does not match: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}")
    return model


def save_prefix_captioner(model: PrefixCaptioner, path: Path, clip: str, tokenizer: str,
                          metadata: dict | None = None, input_norm: float | None = 1.0) -> None:
    """Write RegionLab's captioner format: fp16 safetensors + config JSON in the metadata."""
    from safetensors.torch import save_file

    config = {"embed_dim": model.embed_dim, "prefix_length": model.prefix_length,
              "hidden": model.mapper[0].out_features, "gpt": model.gpt.config.to_diff_dict(),
              "clip": clip, "tokenizer": tokenizer, "input_norm": input_norm}
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()
             if k != "gpt.lm_head.weight"}  # tied to the token embedding
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": "pt", "regionlab_captioner": json.dumps(config)}
    meta.update({k: json.dumps(v) for k, v in (metadata or {}).items()})
    save_file(state, str(path), metadata=meta)


def read_prefix_captioner(path: Path) -> tuple[PrefixCaptioner, dict]:
    """Inverse of :func:`save_prefix_captioner` -> (model in fp32, config)."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    from transformers import GPT2Config

    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata() or {}
    if "regionlab_captioner" not in meta:
        raise ModelUnavailableError(f"{path} is not a RegionLab captioner (no config metadata)")
    config = json.loads(meta["regionlab_captioner"])
    gpt = GPT2Config(**config["gpt"])
    model = PrefixCaptioner(config["embed_dim"], config["prefix_length"], gpt, config["hidden"])
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    state.setdefault("gpt.lm_head.weight", state["gpt.transformer.wte.weight"])
    model.load_state_dict(state)
    return model, config


def _hf_tokenizer(source: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=True)
    except Exception as exc:
        raise ModelUnavailableError(
            f"GPT-2 tokenizer {source!r} not found locally ({type(exc).__name__}). Download it "
            f"while online with `hf download {source}` (only the tokenizer files are needed), or "
            f"pass a folder holding vocab.json and merges.txt.") from None


def _codec(tokenizer: str):
    return ShapesCodec() if tokenizer == "shapes" else HFCodec(_hf_tokenizer(tokenizer))


# ------------------------------------------------------------------ specs and loaders


def _file_available(spec: ModelSpec) -> tuple[bool, str]:
    path = Path(spec.extra["path"]).expanduser()
    if not path.is_file():
        return False, f"weights not found: {path}"
    tok = spec.extra.get("tokenizer", "shapes")
    if tok != "shapes":
        try:
            _hf_tokenizer(tok)
        except ModelUnavailableError:
            return False, f"tokenizer {tok!r} not available locally"
    return True, f"local file {path.name}"


def _finish(spec, model, codec, config, device, dtype) -> LoadedCaptioner:
    model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return LoadedCaptioner(spec.name, model, codec, config["clip"], model.embed_dim,
                           config.get("input_norm"), device, dtype)


def _load_prefix(spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> LoadedCaptioner:
    path = Path(spec.extra["path"]).expanduser()
    if not path.is_file():
        raise ModelUnavailableError(f"captioner {spec.name!r}: weights not found at {path}. "
                                    f"{spec.how_to_get}")
    model, config = read_prefix_captioner(path)
    return _finish(spec, model, _codec(config.get("tokenizer", "shapes")), config, device, dtype)


def _load_clipcap(spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> LoadedCaptioner:
    path = Path(spec.extra["path"]).expanduser()
    if not path.is_file():
        raise ModelUnavailableError(f"captioner {spec.name!r}: checkpoint not found at {path}. "
                                    f"{spec.how_to_get}")
    model = clipcap_from_state(load_state_dict_file(path))
    config = {"clip": spec.extra["clip"], "input_norm": spec.extra.get("input_norm")}
    return _finish(spec, model, _codec(spec.extra["tokenizer"]), config, device, dtype)


def shapes_captioner_spec(name: str = "shapes-captioner") -> ModelSpec:
    path = Path(os.environ.get("REGIONLAB_SHAPES_CAPTIONER", SHAPES_CAPTIONER))
    return ModelSpec(
        name=name, kind="captioner", source=f"bundled:{path}", loader=_load_prefix,
        availability=_file_available, arch="prefix-gpt2-tiny",
        description="ShapesWorld CLIPCap-style captioner trained here; reads shapes-clip",
        how_to_get="Retrain with `python -m regionlab.training.train_captioner`.",
        extra={"path": str(path), "clip": "shapes-clip", "tokenizer": "shapes"},
    )


def clipcap_spec(name: str, path: str | Path, clip: str = "ViT-B-32@openai",
                 tokenizer: str = "openai-community/gpt2", description: str = "",
                 input_norm: float | None = None) -> ModelSpec:
    """A user-supplied CLIPCap (MLP mapper) checkpoint that reads embeddings of ``clip``."""
    return ModelSpec(
        name=name, kind="captioner", source=str(path), loader=_load_clipcap,
        availability=_file_available, arch="clipcap-mlp",
        description=description or f"CLIPCap checkpoint {path} (reads {clip})",
        how_to_get=("Download a CLIPCap MLP checkpoint (e.g. coco_weights.pt from the CLIPCap "
                    "project) and point RegionLab at it: --captioner clipcap@/path/to/weights.pt, "
                    "or set REGIONLAB_CLIPCAP_COCO=/path/to/coco_weights.pt."),
        extra={"path": str(path), "clip": clip, "tokenizer": tokenizer, "input_norm": input_norm},
    )


def adhoc_captioner(arch: str, source: str) -> ModelSpec:
    """``clipcap@/path/weights.pt`` (reads ViT-B-32@openai) or ``prefix@/path/x.safetensors``
    (RegionLab format; the file names its CLIP)."""
    if arch == "clipcap":
        return clipcap_spec(f"clipcap@{source}", source)
    if arch == "prefix":
        return ModelSpec(name=f"prefix@{source}", kind="captioner", source=source,
                         loader=_load_prefix, availability=_file_available, arch="prefix-gpt2",
                         description=f"RegionLab captioner file {source}",
                         extra={"path": source, "clip": "?", "tokenizer": "shapes"})
    raise ModelUnavailableError(
        f"unknown captioner architecture {arch!r}; use clipcap@/path/to/weights.pt or "
        f"prefix@/path/to/captioner.safetensors")


def builtin_captioner_specs() -> list[ModelSpec]:
    cache = Path("~/.cache/regionlab/clipcap").expanduser()
    coco = os.environ.get("REGIONLAB_CLIPCAP_COCO", str(cache / "coco_weights.pt"))
    cc = os.environ.get("REGIONLAB_CLIPCAP_CONCEPTUAL", str(cache / "conceptual_weights.pt"))
    return [
        shapes_captioner_spec(),
        clipcap_spec("clipcap-coco", coco, description="CLIPCap MLP, COCO captions (ViT-B/32)"),
        clipcap_spec("clipcap-conceptual", cc,
                     description="CLIPCap MLP, Conceptual Captions (ViT-B/32)"),
    ]


register_adhoc("captioner", adhoc_captioner)

