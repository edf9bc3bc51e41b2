"""Load test: concurrent gradio_client sessions against the app on 127.0.0.1 (issue 10).

The app runs in this process with the bundled models (``tests/app_server.running_app``). Each
of ``--sessions`` clients gets its own ShapesWorld scene (``regionlab.ui.examples.scene``) and
sends ``--requests`` mixed requests (segment, invert, retrieve, compare, ground, label), all
sessions at once. Every result is checked against that session's own scene:

- masks (segment) against the scene's ground-truth object masks (IoU);
- labels (retrieve, compare, label) and the grounded box against the scene's objects.

A model-dependent answer that differs from the ground truth is sent again, alone, after the
run: it must come back identical (the model's own error, not interference), and it must not
fit another session's scene better than its own (that would be cross-session leakage).
Reports total wall time, per-request latency (p50/p95, queue wait included) and the server
process's RSS before start-up, after a warm-up and after each round (the clients run in a child
process, so their memory is not counted; each closes its session at the end, like a tab).

    .venv/bin/python benchmarks/app_load.py                  # 16 sessions x 10 requests
    .venv/bin/python benchmarks/app_load.py --sessions 4 --requests 5 --out /tmp/load.json
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib
import json
import os
import pickle
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "app_load.json"
FIRST_SEED = 100  # example-namespace seeds 100, 101, ... (not the app's gallery seeds)
MIN_IOU = 0.8


def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def rss_mb() -> float:
    """Resident set size of this process now (Linux /proc), in MiB."""
    return _status("VmRSS") / 1024


def os_threads() -> int:
    return _status("Threads")


def trimmed_rss_mb() -> float:
    """RSS after a full garbage collection and glibc's ``malloc_trim`` (memory the allocator
    keeps but no object uses is returned first): the live memory, without allocator noise."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    return rss_mb()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class SceneFiles:
    seed: int
    scene: object
    image: str
    masks: list[str]  # one PNG per object, scene order
    labels: list[str]
    target: int  # an object whose label is unique in the scene

    @property
    def classes(self) -> list[str]:
        return list(dict.fromkeys(self.labels))


def pick_scenes(n: int, folder: Path) -> list[SceneFiles]:
    """``n`` scenes with >= 3 objects and at least one object whose label is unique (so that
    "the <label>" names one object); written as PNG files."""
    from regionlab.ui.examples import scene

    out, seed = [], FIRST_SEED
    while len(out) < n:
        sc = scene(seed)
        labels = [o.label for o in sc.objects]
        unique = [i for i, lab in enumerate(labels) if labels.count(lab) == 1]
        if len(labels) >= 3 and unique:
            d = folder / f"scene{seed}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(sc.image).save(d / "image.png")
            masks = []
            for i, o in enumerate(sc.objects):
                Image.fromarray(o.mask.astype(np.uint8) * 255).save(d / f"mask{i}.png")
                masks.append(str(d / f"mask{i}.png"))
            out.append(SceneFiles(seed, sc, str(d / "image.png"), masks, labels, unique[0]))
        seed += 1
    return out


def interior_point(mask: np.ndarray) -> tuple[int, int]:
    """The pixel of ``mask`` farthest from its border, as (x, y)."""
    import cv2

    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(x), int(y)


def read_mask(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L")) > 127


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def colour(label: str) -> str:
    return label.split()[0]


# ---------------------------------------------------------------------------- requests


@dataclass
class Outcome:
    session: int
    step: int
    endpoint: str
    seconds: float
    ok: bool
    detail: str = ""
    answer: object = None  # what was compared (for the re-run and leakage checks)
    args: tuple = ()
    kind: str = ""  # "mask" (segment) or "model" (a model-dependent answer)


@dataclass
class Session:
    index: int
    files: SceneFiles
    outcomes: list[Outcome] = field(default_factory=list)
    emb: str | None = None


def plan(sf: SceneFiles, n: int) -> list[tuple[str, callable]]:
    """The session's ``n`` requests: (endpoint, function(client, session) -> Outcome fields)."""
    from gradio_client import handle_file as h

    objs = sf.scene.objects
    t = sf.target
    others = [i for i in range(len(objs)) if i != t]

    def segment_click(i):
        def run(c, s):
            x, y = interior_point(objs[i].mask)
            args = (h(sf.image), [[x, y, 1]], None, True)
            masks, _ = c.predict(*args, api_name="/segment")
            m = read_mask(masks[0])
            v = iou(m, objs[i].mask)
            return v >= MIN_IOU, f"IoU {v:.3f} with object {i}", m, args, "mask"
        return "segment", run

    def segment_box(i):
        def run(c, s):
            args = (h(sf.image), [], list(objs[i].box), False)
            masks, _ = c.predict(*args, api_name="/segment")
            m = read_mask(masks[0])
            v = iou(m, objs[i].mask)
            return v >= MIN_IOU, f"IoU {v:.3f} with object {i}", m, args, "mask"
        return "segment", run

    def invert(c, s):
        emb, maps, info = c.predict(h(sf.image), [h(sf.masks[t])], None, None, None, None,
                                    "auto", api_name="/invert")
        e = np.load(emb)
        s.emb = emb
        ok = e.shape == (1, 96) and bool(np.isfinite(e).all()) and len(maps) == 1 \
            and info["losses"][-1] < info["losses"][0]
        return ok, f"embedding {e.shape}, loss {info['losses'][0]:.3f} -> " \
                   f"{info['losses'][-1]:.3f}", None, (), ""

    def retrieve(vocab_kind):
        def run(c, s):
            vocab = ", ".join(sf.classes) if vocab_kind == "own" else "shapes"
            args = (h(s.emb), vocab, "single", 3)
            res = c.predict(*args, api_name="/retrieve")
            top = res["top"][0][0]["label"]
            ok = colour(top) == colour(sf.labels[t])
            return ok, f"top-1 {top!r} for {sf.labels[t]!r}", top, args, "model"
        return "retrieve", run

    def compare(c, s):
        args = (h(sf.image), [h(m) for m in sf.masks], "shapes", ["masked-crop"])
        res = c.predict(*args, api_name="/compare")
        got = [r["masked-crop"]["label"] for r in res["rows"]]
        return got == sf.labels, f"{got} for {sf.labels}", got, args, "model"

    def ground(i):
        def run(c, s):
            args = (h(sf.image), f"the {sf.labels[i]}", [list(o.box) for o in objs])
            _, res = c.predict(*args, api_name="/ground")
            return res["index"] == i, f"index {res['index']} for {i}", res["index"], args, \
                "model"
        return "ground", run

    def label(c, s):
        args = (h(sf.image), ", ".join(sf.classes), [h(m) for m in sf.masks])
        _, _, res = c.predict(*args, api_name="/label")
        got = [r["label"] for r in res["regions"]]
        return got == sf.labels, f"{got} for {sf.labels}", got, args, "model"

    unique_others = [i for i in others if sf.labels.count(sf.labels[i]) == 1]
    steps = [segment_click(t), ("invert", invert), retrieve("own"), compare,
             segment_box(others[0]), ground(t), label, retrieve("shapes"),
             segment_click(others[-1]), ground(unique_others[0] if unique_others else t)]
    steps = [s if isinstance(s, tuple) else (s.__name__, s) for s in steps]
    return [steps[k % len(steps)] for k in range(n)]


class TimedClient:
    """A gradio_client ``Client`` whose calls give up at ``deadline`` (time.perf_counter)."""

    def __init__(self, client, deadline: float):
        self.client, self.deadline = client, deadline

    def predict(self, *args, api_name: str):
        left = self.deadline - time.perf_counter()
        if left <= 0:
            raise TimeoutError("the run's time limit has passed")
        return self.client.submit(*args, api_name=api_name).result(timeout=left)


def run_session(url: str, s: Session, n: int, start: threading.Barrier, deadline: float) -> None:
    from gradio_client import Client

    raw = Client(url, verbose=False)
    client = TimedClient(raw, deadline)
    start.wait(timeout=max(1.0, deadline - time.perf_counter()))
    try:
        for k, (endpoint, fn) in enumerate(plan(s.files, n)):
            t0 = time.perf_counter()
            try:
                ok, detail, answer, args, kind = fn(client, s)
            except Exception as exc:  # a failed request is a result, not a crash of the run
                ok, detail, answer, args, kind = (False, f"{type(exc).__name__}: {exc}", None,
                                                  (), "")
            s.outcomes.append(Outcome(s.index, k, endpoint, time.perf_counter() - t0, ok,
                                      detail, answer, args, kind))
    finally:
        raw.close()  # like a closed browser tab: the server may drop the session


def client_round(job: Path) -> None:
    """Child process: one round of ``sessions`` concurrent clients; writes plain data back."""
    spec = json.loads(job.read_text())
    scenes = pick_scenes(spec["sessions"], Path(spec["folder"]))
    batch = [Session(i, sf) for i, sf in enumerate(scenes)]
    deadline = time.perf_counter() + spec["time_left_s"]
    barrier = threading.Barrier(len(batch))
    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(batch)) as pool:
        list(pool.map(run_session, [spec["url"]] * len(batch), batch,
                      [spec["requests"]] * len(batch), [barrier] * len(batch),
                      [deadline] * len(batch)))
    wall = time.perf_counter() - t0
    outcomes = [vars(o) for s in batch for o in s.outcomes]
    with open(spec["result"], "wb") as fh:
        pickle.dump({"wall_s": wall, "outcomes": outcomes}, fh)


def run_round(url: str, scenes: list[SceneFiles], requests: int, time_left_s: float,
              folder: Path) -> tuple[list[Session], float]:
    """One round, its clients in a child process (so this process's RSS is the server's)."""
    job, result = folder / "round.json", folder / "round.pkl"
    job.write_text(json.dumps({"url": url, "sessions": len(scenes), "requests": requests,
                               "time_left_s": time_left_s, "folder": str(folder),
                               "result": str(result)}))
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--client-round", str(job)],
                   check=True, env=env, timeout=time_left_s + 120)
    with open(result, "rb") as fh:
        data = pickle.load(fh)
    batch = [Session(i, sf) for i, sf in enumerate(scenes)]
    for o in data["outcomes"]:
        batch[o["session"]].outcomes.append(Outcome(**o))
    return batch, data["wall_s"]


def warm_up(url: str, sf: SceneFiles) -> None:
    """One request of every kind (model loading, first-call costs) before measuring."""
    from gradio_client import Client

    c = Client(url, verbose=False)
    s = Session(-1, sf)
    for _, fn in plan(sf, 10):
        fn(c, s)
    c.close()


def recheck(url: str, sessions: list[Session]) -> dict:
    """Send every model-dependent answer that missed the ground truth again, alone; compare
    segment misses with the other sessions' objects (leakage)."""
    from gradio_client import Client

    c = Client(url, verbose=False)
    rerun = same = leaks = 0
    for s in sessions:
        for o in s.outcomes:
            if o.ok or o.answer is None:
                continue
            if o.kind == "mask":
                own = max(iou(o.answer, ob.mask) for ob in s.files.scene.objects)
                other = max(iou(o.answer, ob.mask) for t in sessions if t is not s
                            for ob in t.files.scene.objects)
                leaks += other > own
                continue
            rerun += 1
            again = c.predict(*o.args, api_name=f"/{o.endpoint}")
            if o.endpoint == "retrieve":
                again = again["top"][0][0]["label"]
            elif o.endpoint == "compare":
                again = [r["masked-crop"]["label"] for r in again["rows"]]
            elif o.endpoint == "ground":
                again = again[1]["index"]
            elif o.endpoint == "label":
                again = [r["label"] for r in again[2]["regions"]]
            if again == o.answer:
                same += 1
                o.ok, o.detail = True, o.detail + " (model error: identical when sent alone)"
            else:
                leaks += 1
                o.detail += f" (alone: {again})"
    return {"model_misses_rerun": rerun, "identical_when_alone": same, "leaks": leaks}


def percentile(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(q / 100 * (len(v) - 1))))]


def run_load(sessions: int = 16, requests: int = 10, rounds: int = 1,
             out: Path | None = RESULTS, time_limit_s: float = 900.0) -> dict:
    """Start the app, warm it up, run ``rounds`` rounds of the load (fresh client sessions
    each round, same scenes), check every answer; returns the report (and writes it to
    ``out`` unless None). A request still unanswered ``time_limit_s`` after the first round
    started fails (every round shares the limit)."""
    import torch

    from regionlab.config import LIMITS

    sys.path.insert(0, str(ROOT / "tests"))
    running_app = importlib.import_module("app_server").running_app
    rss = {"start_mb": rss_mb()}
    folder = Path(tempfile.mkdtemp(prefix="regionlab-load-"))
    scenes = pick_scenes(sessions + 1, folder)
    walls, ss = [], []
    with running_app() as demo:
        url = demo.local_url
        rss["app_started_mb"] = rss_mb()
        warm_up(url, scenes[-1])  # a scene no session uses
        gc.collect()
        rss["after_warm_up_mb"] = rss_mb()
        trimmed = {"after_warm_up_mb": trimmed_rss_mb()}
        threads = {"after_warm_up": os_threads()}
        deadline = time.perf_counter() + time_limit_s
        for r in range(rounds):
            batch, wall = run_round(url, scenes[:sessions], requests,
                                    deadline - time.perf_counter(), folder)
            walls.append(wall)
            gc.collect()
            rss[f"after_round_{r + 1}_mb"] = rss_mb()
            trimmed[f"after_round_{r + 1}_mb"] = trimmed_rss_mb()
            threads[f"after_round_{r + 1}"] = os_threads()
            ss += batch
        holder = getattr(getattr(demo, "server_app", None), "state_holder", None)
        kept = len(holder.session_data) if holder is not None else None
        checks = recheck(url, ss)
    load = os.getloadavg()
    outcomes = [o for s in ss for o in s.outcomes]
    lat = [o.seconds for o in outcomes]
    by_ep = {}
    for ep in sorted({o.endpoint for o in outcomes}):
        v = [o.seconds for o in outcomes if o.endpoint == ep]
        by_ep[ep] = {"n": len(v), "p50_s": round(statistics.median(v), 3),
                     "p95_s": round(percentile(v, 95), 3), "max_s": round(max(v), 3)}
    report = {
        "sessions": sessions,
        "requests_per_session": requests,
        "requests": len(outcomes),  # over all rounds
        "succeeded": sum(o.ok for o in outcomes),
        "failed": [f"session {o.session} step {o.step} {o.endpoint}: {o.detail}"
                   for o in outcomes if not o.ok],
        **checks,
        "rounds": rounds,
        "wall_s": round(walls[0], 2),
        "wall_s_per_round": [round(w, 2) for w in walls],
        "throughput_rps": round(len(outcomes) / sum(walls), 2),
        "latency_p50_s": round(statistics.median(lat), 3),
        "latency_p95_s": round(percentile(lat, 95), 3),
        "latency_max_s": round(max(lat), 3),
        "by_endpoint": by_ep,
        "rss_mb": {k: round(v, 1) for k, v in rss.items()},
        "rss_growth_round_1_mb": round(rss["after_round_1_mb"] - rss["after_warm_up_mb"], 1),
        "rss_growth_later_rounds_mb": [
            round(rss[f"after_round_{r + 1}_mb"] - rss[f"after_round_{r}_mb"], 1)
            for r in range(1, rounds)],
        "trimmed_rss_mb": {k: round(v, 1) for k, v in trimmed.items()},
        "trimmed_growth_per_round_mb": [
            round(trimmed[f"after_round_{r + 1}_mb"] - trimmed[prev], 1)
            for r, prev in enumerate(["after_warm_up_mb"] + [f"after_round_{r + 1}_mb"
                                                             for r in range(rounds - 1)])],
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "server_os_threads": threads,
        "server_sessions_kept": kept,
        "server_sessions_limit": LIMITS.max_sessions,
        "scene_seeds": [sf.seed for sf in scenes[:sessions]],
        "time_limit_s": time_limit_s,
        "setup": {
            "app": "in-process on 127.0.0.1, bundled shapes-clip, classical segmenter, cpu, "
                   "model concurrency 1 (the app default); clients in a child process, so "
                   "rss_mb is the server's",
            "torch_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "load_average_1_5_15_at_end": [round(v, 2) for v in load],
        },
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=16)
    p.add_argument("--requests", type=int, default=10, help="requests per session")
    p.add_argument("--rounds", type=int, default=2,
                   help="rounds of fresh sessions (growth after the first shows leaks)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--time-limit", type=float, default=900.0, help="seconds for all rounds")
    p.add_argument("--client-round", type=Path, help=argparse.SUPPRESS)  # internal: child
    a = p.parse_args(argv)
    if a.client_round:
        client_round(a.client_round)
        return 0
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    report = run_load(a.sessions, a.requests, a.rounds, a.out, a.time_limit)
    print(json.dumps({k: v for k, v in report.items() if k != "by_endpoint"}, indent=2))
    return 0 if not report["failed"] and not report["leaks"] else 1


if __name__ == "__main__":
    sys.exit(main())
