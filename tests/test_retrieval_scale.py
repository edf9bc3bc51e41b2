"""Retrieval scores: a softmax at the model's own logit scale (see retrieval_calibration)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from regionlab.tasks.retrieval import retrieve


class _FakeCLIP:
    """Two classes along x and y; a learnt logit scale of 10."""

    name = "fake-scale"
    device = "cpu"
    embed_dim = 2
    logit_scale = 10.0

    def encode_texts(self, texts):
        return torch.tensor([[1.0, 0.0] if "circle" in t else [0.0, 1.0] for t in texts])


def _expected(scale: float, cos_a: float, cos_b: float) -> float:
    return 1.0 / (1.0 + math.exp(scale * (cos_b - cos_a)))


def test_scores_use_the_models_own_scale_unless_told():
    emb = F.normalize(torch.tensor([[1.0, 0.8]]), dim=-1)
    ca, cb = float(emb[0, 0]), float(emb[0, 1])
    own = retrieve(emb, ["circle", "square"], clip=_FakeCLIP(), top_k=2)[0]
    assert own[0]["label"] == "circle"
    assert own[0]["score"] == pytest.approx(_expected(10.0, ca, cb), abs=1e-5)
    at100 = retrieve(emb, ["circle", "square"], clip=_FakeCLIP(), top_k=2, scale=100.0)[0]
    assert at100[0]["label"] == "circle"  # same ranking, other confidence
    assert at100[0]["score"] == pytest.approx(_expected(100.0, ca, cb), abs=1e-5)
    assert at100[0]["score"] > 0.99 > 0.9 > own[0]["score"]


def test_bundled_clip_learnt_its_own_scale(bundled_clip):
    assert 10.0 < bundled_clip.logit_scale < 60.0
