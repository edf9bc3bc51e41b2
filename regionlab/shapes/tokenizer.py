"""A small word-level tokenizer for the bundled ShapesWorld CLIP.

open_clip's BPE tokenizer has 49 408 entries, whose embedding table alone would be 25 MB at
width 128; ShapesWorld text needs a few hundred words. Lower-cased words and punctuation marks
are looked up in a fixed vocabulary; unknown words become ``<unk>``. Ids follow open_clip's
conventions: 0 pads, ``<sot>`` starts, and ``<eot>`` has the HIGHEST id because open_clip's
text tower pools the argmax token.
"""

from __future__ import annotations

import re

import torch

from .vocab import COLOUR_NAMES, SHAPES

_WORDS = """
a an the this that these those there is are was be it its of in on at to with and or but not no
photo photos picture pictures image images drawing drawings rendering renderings painting
sculpture sketch tattoo toy plushie origami cartoon video game art embroidered plastic
bad good nice cool weird clean dirty bright dark close-up cropped blurry jpeg low resolution
pixelated
scene one big small medium large little tiny huge
left right top bottom above below under over behind front back near far next beside between
leftmost rightmost topmost bottommost upper lower middle center centre side corner
biggest smallest largest bigger smaller larger closest nearest farthest furthest highest lowest
first second third fourth last other another
shape shapes object objects thing things item colour color coloured colored
red orange yellow green blue purple violet pink brown black white grey gray
circle circles square squares triangle triangles star stars cross crosses plus disk disc ring
box rectangle dot ball
of from by my your his her their our
who which what where
""".split()

SPECIAL_PAD, SPECIAL_SOT, SPECIAL_UNK = "<pad>", "<sot>", "<unk>"
SPECIAL_EOT = "<eot>"
PUNCT = [".", ",", "'", "!", "?", "-", ";", ":"]


def _build_vocab() -> list[str]:
    words: list[str] = []
    for w in [*COLOUR_NAMES, *SHAPES, *_WORDS, *PUNCT]:
        if w not in words:
            words.append(w)
    return [SPECIAL_PAD, SPECIAL_SOT, SPECIAL_UNK, *words, SPECIAL_EOT]


VOCAB: list[str] = _build_vocab()
_TOKEN_RE = re.compile(r"[a-z]+(?:-[a-z]+)*|[.,'!?;:-]")


class ShapesTokenizer:
    """Callable like open_clip tokenizers: ``tok(["a red star"]) -> LongTensor[B, context]``."""

    def __init__(self, context_length: int = 24):
        self.context_length = context_length
        self.vocab = VOCAB
        self.index = {w: i for i, w in enumerate(VOCAB)}
        self.sot_token_id = self.index[SPECIAL_SOT]
        self.eot_token_id = self.index[SPECIAL_EOT]
        self.unk_token_id = self.index[SPECIAL_UNK]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def words(self, text: str) -> list[str]:
        return _TOKEN_RE.findall(text.lower())

    def unknown_words(self, texts: str | list[str]) -> list[str]:
        """The words of ``texts`` outside the vocabulary (each once, in order): they all
        become the same ``<unk>`` token, so the model cannot tell them apart."""
        texts = [texts] if isinstance(texts, str) else texts
        out: list[str] = []
        for text in texts:
            out += [w for w in self.words(text) if w not in self.index and w not in out]
        return out

    def encode(self, text: str) -> list[int]:
        return [self.index.get(w, self.unk_token_id) for w in self.words(text)]

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        n = context_length or self.context_length
        out = torch.zeros(len(texts), n, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.sot_token_id, *self.encode(text)][: n - 1] + [self.eot_token_id]
            out[row, : len(ids)] = torch.tensor(ids)
        return out
