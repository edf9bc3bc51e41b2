"""Issue 30 item 5 (GPU path), checked without a GPU.

The MaskInversion iteration loop (``regionlab.region.maskinversion._optimise``, both engines,
LeGrad's relevance and the map resampling it calls) must stay on the input's device: on a GPU,
every host round trip (``.item()``, ``float()`` / ``bool()`` of a tensor, ``.cpu()``,
``.numpy()``, ``.tolist()``, boolean indexing, ``torch.equal``) waits for all queued kernels,
and a tensor made without ``device=`` lands on the CPU (a mixed-device error, or a copy).

On a CPU-only machine the two cannot be told apart by where tensors live, so :func:`audit`
records them by *what the code asks for*, with two hooks that see every call while active:

- a ``TorchFunctionMode`` sees each torch call made directly by Python code: the sync methods
  above and the factory functions (``torch.zeros``, ``torch.tensor``, ...) called without
  ``device=``; ``torch.from_numpy`` is wrapped for the same reason;
- a ``TorchDispatchMode`` sees each ATen op, also those inside torch's own Python code and the
  autograd backward: ``_local_scalar_dense`` (what every scalar read becomes), ``nonzero``,
  ``masked_select``, ``equal``, ``unique``, bool-mask indexing and ``lift_fresh`` (a tensor from
  host data).

A record is kept when the innermost non-torch frame that asked for it is in ``regionlab``; the
optimiser's own host-side step counter (``torch.optim``, a CPU scalar by design, no device
sync) is allowed. ``test_audit_catches`` shows each kind is caught.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_maskinversion import box_mask, tiny_clip
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import regionlab.region.maskinversion as mi
from regionlab.errors import InputError

ROOT = Path(__file__).resolve().parent.parent

SYNC_METHODS = {"item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__",
                "__index__", "__complex__", "__array__"}
SYNC_OPS = {"_local_scalar_dense", "nonzero", "nonzero_static", "masked_select", "equal",
            "is_nonzero", "unique", "_unique", "_unique2", "unique_dim", "unique_consecutive",
            "lift_fresh", "lift_fresh_copy", "repeat_interleave"}
INDEX_OPS = {"index", "index_put", "index_put_", "_index_put_impl_"}
try:  # the factories torch's own default-device mode redirects (a private list)
    from torch.utils._device import _device_constructors

    FACTORIES = set(_device_constructors())
except ImportError:  # pragma: no cover - an older/newer torch without it
    FACTORIES = {getattr(torch, n) for n in ("arange", "as_tensor", "asarray", "empty", "eye",
                                             "full", "linspace", "ones", "rand", "randint",
                                             "randn", "randperm", "scalar_tensor", "tensor",
                                             "zeros")}


def _culprit(prefix: str, skip: int = 2) -> str | None:
    """``module:line`` of the first frame outside torch (and this file's hooks) if it is in
    ``prefix``; None when torch.optim asked first or nobody under ``prefix`` did."""
    f = sys._getframe(skip)
    while f is not None:
        mod = f.f_globals.get("__name__", "")
        if mod.startswith("torch.optim"):
            return None
        if mod.startswith(prefix) and f.f_code.co_name not in ("__torch_function__",
                                                               "__torch_dispatch__", "_wrapped"):
            return f"{mod}:{f.f_lineno} {f.f_code.co_name}"
        if mod != "torch" and not mod.startswith("torch.") and not mod.startswith(prefix):
            if mod not in ("contextlib", "functools", __name__):
                return None
        f = f.f_back
    return None


def _bool_index(args) -> bool:
    idx = args[1] if len(args) > 1 else ()
    return any(torch.is_tensor(t) and t.dtype == torch.bool for t in (idx or ()))


class _FunctionAudit(TorchFunctionMode):
    def __init__(self, records: list, prefix: str):
        super().__init__()
        self.records, self.prefix = records, prefix

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        what = None
        if name in SYNC_METHODS:
            what = f"host sync: Tensor.{name}"
        elif func in FACTORIES and kwargs.get("device") is None:
            what = f"tensor made without device=: torch.{name}"
        if what:
            where = _culprit(self.prefix)
            if where:
                self.records.append((what, where))
        return func(*args, **kwargs)


class _DispatchAudit(TorchDispatchMode):
    def __init__(self, records: list, prefix: str):
        super().__init__()
        self.records, self.prefix = records, prefix

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        op = func._opname
        if op in SYNC_OPS or (op in INDEX_OPS and _bool_index(args)):
            where = _culprit(self.prefix)
            if where:
                self.records.append((f"host sync / host data: aten.{op}", where))
        return func(*args, **(kwargs or {}))


@contextmanager
def audit(prefix: str = "regionlab"):
    """Collect (what, where) for every host round trip or device-less tensor asked for by code
    under ``prefix`` while active."""
    records: list = []
    real = torch.from_numpy

    def _wrapped(a):
        where = _culprit(prefix)
        if where:
            records.append(("tensor from host data: torch.from_numpy", where))
        return real(a)

    torch.from_numpy = _wrapped
    try:
        with _FunctionAudit(records, prefix), _DispatchAudit(records, prefix):
            yield records
    finally:
        torch.from_numpy = real


# ------------------------------------------------------------------ the audit itself works

_t = torch.ones(3)
CAUGHT = {
    "item": lambda: _t.sum().item(),
    "float": lambda: float(_t.sum()),
    "bool": lambda: bool(torch.isfinite(_t.sum())),
    "if tensor": lambda: 1 if not torch.isfinite(_t.sum()) else 0,
    "cpu": lambda: _t.cpu(),
    "numpy": lambda: _t.numpy(),
    "tolist": lambda: _t.tolist(),
    "np.asarray": lambda: np.asarray(_t),
    "zeros": lambda: torch.zeros(3),
    "tensor": lambda: torch.tensor([1.0, 2.0]),
    "as_tensor": lambda: torch.as_tensor(np.ones(2)),
    "from_numpy": lambda: torch.from_numpy(np.ones(2)),
    "bool mask": lambda: _t[_t > 0],
    "nonzero": lambda: torch.nonzero(_t),
    "equal": lambda: torch.equal(_t, _t),
}
ALLOWED = {
    "zeros on the device": lambda: torch.zeros(3, device=_t.device),
    "zeros_like": lambda: torch.zeros_like(_t),
    "maths": lambda: F.normalize(_t[None], dim=-1).sum() * 2.0,
    "int index": lambda: _t[1:],
    "optimiser step": lambda: _adamw_step(),
}


def _adamw_step():
    p = torch.nn.Parameter(torch.ones_like(_t))
    opt = torch.optim.AdamW([p], lr=0.1)
    (p * p).sum().backward()
    opt.step()


@pytest.mark.parametrize("name", sorted(CAUGHT))
def test_audit_catches(name):
    with audit(__name__) as rec:
        CAUGHT[name]()
    assert rec, f"{name} was not recorded"


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_audit_allows(name):
    with audit(__name__) as rec:
        ALLOWED[name]()
    assert not rec, rec


# ------------------------------------------------------------------ the MaskInversion loop


@pytest.fixture(scope="module")
def image():
    return (np.random.RandomState(0).rand(40, 48, 3) * 255).astype(np.uint8)


MASKS = [box_mask(40, 48, x, y, x + 14, y + 12) for x, y in [(0, 0), (20, 0), (30, 20)]]


@pytest.mark.parametrize("engine", ["factorized", "autograd"])
@pytest.mark.parametrize("keep_history", [False, True])
def test_iteration_loop_has_no_host_round_trip(engine, keep_history, image, monkeypatch):
    """Every chunk's optimisation (all iterations, the final maps, the history) asks for no
    host sync and makes no device-less tensor; the whole call transfers a fixed number of
    times, whatever the number of iterations."""
    clip = tiny_clip()
    real = mi._optimise
    found: list = []
    calls: list = []

    def audited(*a, **k):
        calls.append(1)
        with audit() as rec:
            out = real(*a, **k)
        found.extend(rec)
        return out

    monkeypatch.setattr(mi, "_optimise", audited)
    r = mi.invert(clip, image, MASKS, iterations=3, lr=0.1, alpha=0.2, engine=engine,
                  keep_history=keep_history, chunk=2, resolution=64)
    assert len(calls) == 2 and len(r.losses) == 3
    assert not found, "\n".join(f"{w}: {what}" for what, w in found)
    monkeypatch.setattr(mi, "_optimise", real)

    def syncs(iterations):
        with audit() as rec:
            mi.invert(clip, image, MASKS, iterations=iterations, lr=0.1, engine=engine,
                      keep_history=keep_history, chunk=2, resolution=64)
        return len(rec)

    assert syncs(1) == syncs(4)


def test_auto_engine_loop_stays_on_device(image, monkeypatch):
    clip = tiny_clip()
    real = mi._optimise
    found: list = []

    def audited(*a, **k):
        with audit() as rec:
            out = real(*a, **k)
        found.extend(rec)
        return out

    monkeypatch.setattr(mi, "_optimise", audited)
    r = mi.invert(clip, image, MASKS, iterations=2, lr=0.1, engine="auto")
    assert r.engine in ("factorized", "autograd") and not found, found


def test_non_finite_loss_still_refused(image, monkeypatch):
    """The divergence check moved out of the loop (one look at all losses at the end)."""
    clip = tiny_clip()
    real = mi.soft_dice_loss
    monkeypatch.setattr(mi, "soft_dice_loss", lambda m, k: real(m, k) * float("nan"))
    with pytest.raises(InputError, match="diverged"):
        mi.invert(clip, image, MASKS, iterations=2, lr=0.1, engine="factorized", chunk=2)


def test_history_frames_round_like_numpy():
    """float32 history frames become float16 on the device exactly as numpy's astype would;
    float64 ones wait for the host (torch rounds them through float32)."""
    x = torch.rand(4096, dtype=torch.float32) ** 4
    a = mi._history_numpy(mi._history_frame(x))
    assert np.array_equal(a.view(np.uint16), x.numpy().astype(np.float16).view(np.uint16))
    d = torch.tensor([1 + 2**-11 + 2**-40], dtype=torch.float64)
    assert mi._history_frame(d).dtype == torch.float64
    assert mi._history_numpy(mi._history_frame(d))[0] == np.float16(1 + 2**-10)


# ------------------------------------------------------------------ benchmark --device


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_benchmark_device_cuda_without_cuda_is_a_clear_error():
    out = subprocess.run([sys.executable, "-m", "benchmarks.maskinversion_speed", "--device",
                          "cuda", "--sizes", "224", "--masks", "1", "--iterations", "1",
                          "--out", "/tmp/should_not_be_written.json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "CUDA is not available" in out.stderr


# ------------------------------------------------------------------ on a GPU (opt-in)


@pytest.mark.gpu
@pytest.mark.parametrize("engine", ["factorized", "autograd"])
def test_cuda_matches_cpu_and_stays_on_device(engine, image):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cpu = tiny_clip()
    gpu = dataclasses.replace(tiny_clip(), device=torch.device("cuda"))
    gpu.model.cuda()
    kw = dict(iterations=4, lr=0.1, alpha=0.1, engine=engine, keep_history=True, chunk=2)
    a = mi.invert(cpu, image, MASKS, **kw)
    created_on_cpu: list = []

    class OnCPU(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            outs = out if isinstance(out, (tuple, list)) else (out,)
            if any(torch.is_tensor(t) and t.device.type == "cpu" for t in outs):
                where = _culprit("regionlab")
                if where:
                    created_on_cpu.append((str(func), where))
            return out

    real = mi._optimise

    def audited(*args, **k):
        with OnCPU():
            return real(*args, **k)

    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    mi._optimise = audited
    try:
        b = mi.invert(gpu, image, MASKS, **kw)
    finally:
        mi._optimise = real
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
    assert not created_on_cpu, created_on_cpu
    assert b.embeddings.device.type == "cpu" and isinstance(b.maps, np.ndarray)
    assert F.cosine_similarity(a.embeddings, b.embeddings, dim=-1).min() > 0.9999
    assert np.allclose(a.losses, b.losses, atol=1e-4)
    assert np.abs(a.maps - b.maps).max() < 1e-2
    assert len(b.history) == len(a.history) and b.history[0].dtype == np.float16
