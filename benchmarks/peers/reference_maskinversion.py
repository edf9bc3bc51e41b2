"""Runs the REFERENCE packages (legrad-torch 1.1, maskinversion-torch 1.1, open_clip 2.23.0) in
their own virtualenv; called by benchmarks/maskinversion_parity.py and _speed.py.

    REFVENV/bin/python benchmarks/peers/reference_maskinversion.py IN.pt OUT.pt

IN.pt (torch.save dict): arch, state_dict, image (1,3,S,S normalised), masks (P,H,W float),
queries (Q,D) unit, iterations, lr, alpha, dtype ("float32"/"float64"), what ("legrad",
"maskinversion", "both"), threads, device (optional, "cpu" or "cuda"; on CUDA the timed
MaskInversion call follows one untimed 1-mask, 1-iteration warm-up and is bracketed by
torch.cuda.synchronize(), and peak_cuda_mb is the allocator's peak during it).
OUT.pt: legrad maps (Q,S,S), embeddings (P,D), timings.
This file only calls the reference packages' public API; it contains none of their code.
"""

import sys
import time

import torch

inp = torch.load(sys.argv[1], weights_only=False)
torch.set_num_threads(int(inp.get("threads", 2)))
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
import open_clip  # noqa: E402
from legrad import LeWrapper  # noqa: E402
from maskinversion import MaskInversion  # noqa: E402

dtype = getattr(torch, inp["dtype"])
device = torch.device(inp.get("device", "cpu"))
cuda = device.type == "cuda"
out = {}


def fresh():
    model = open_clip.create_model(inp["arch"], pretrained=None)
    model.load_state_dict(inp["state_dict"])
    return model.eval().to(device=device, dtype=dtype)


def sync():
    if cuda:
        torch.cuda.synchronize(device)


image = inp["image"].to(device=device, dtype=dtype)
if inp["what"] in ("legrad", "both"):
    wrapper = LeWrapper(fresh(), layer_index=-1)
    wrapper.to(dtype)  # LeWrapper copies the model's bound methods: .to returns the model
    q = inp["queries"].to(device=device, dtype=dtype)
    sync()
    t0 = time.perf_counter()
    maps = wrapper.compute_legrad(q, image=image)  # (1, Q, S, S)
    sync()
    out["legrad_s"] = time.perf_counter() - t0
    out["legrad"] = maps[0].detach().cpu()
if inp["what"] in ("maskinversion", "both"):
    mi = MaskInversion(fresh(), layer_index=-1, alpha=inp["alpha"], lr=inp["lr"],
                       iterations=inp["iterations"])
    mi.to(dtype)  # __init__ calls .float(); bound to the wrapped model, converts it in place
    masks = inp["masks"].to(device=device, dtype=dtype)
    if cuda:  # pays CUDA's lazy initialisation outside the timing
        sync()
        t0 = time.perf_counter()
        mi.compute_maskinversion(image, masks[:1], iterations=1)
        sync()
        out["warmup_s"] = time.perf_counter() - t0
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    emb = mi.compute_maskinversion(image, masks, iterations=inp["iterations"])
    sync()
    out["maskinversion_s"] = time.perf_counter() - t0
    out["embeddings"] = emb.detach().cpu()
    if cuda:
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
import resource  # noqa: E402

out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
torch.save(out, sys.argv[2])
