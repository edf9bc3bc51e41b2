"""``regionlab eval ... --ray``: the same numbers as the local run, on a local Ray instance with
2 CPUs (issue 29 item 6). Needs the optional extra (``pip install -e ".[scale]"``); skipped
without it. Slow tier: starting Ray takes seconds."""

from __future__ import annotations

import json

import pytest

from regionlab import cli

pytestmark = pytest.mark.slow
VOLATILE = ("seconds", "resumed", "out")


@pytest.fixture(scope="module", autouse=True)
def ray_two_cpus():
    pytest.importorskip("ray.data", reason="Ray is the optional extra: pip install -e '.[scale]'")
    import os

    old = os.environ.get("REGIONLAB_RAY_CPUS")
    os.environ["REGIONLAB_RAY_CPUS"] = "2"
    yield
    if old is None:
        os.environ.pop("REGIONLAB_RAY_CPUS", None)
    else:
        os.environ["REGIONLAB_RAY_CPUS"] = old


def _run(capsys, argv) -> dict:
    code = cli.main(argv + ["--json", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    res = json.loads(out.strip().splitlines()[-1])
    return {k: v for k, v in res.items() if k not in VOLATILE}


def _export(capsys, fmt, out, n, seed):
    assert cli.main(["shapes", "export", "--format", fmt, "--out", str(out), "--n", str(n),
                     "--seed", str(seed), "--json"]) == 0
    capsys.readouterr()


def test_every_eval_task_gives_the_same_numbers_on_ray(tmp_path, capsys):
    _export(capsys, "coco", tmp_path / "coco", 4, 1)
    _export(capsys, "reclip", tmp_path / "rec", 6, 1)
    _export(capsys, "semseg", tmp_path / "sem", 3, 1)
    runs = {
        "classify": ["eval", "classify", "--annotations", str(tmp_path / "coco/instances.json"),
                     "--images", str(tmp_path / "coco/images"), "--model", "shapes-clip",
                     "--methods", "masked-crop,maskinversion,global"],
        "ground": ["eval", "ground", "--refs", str(tmp_path / "rec/refs.jsonl"),
                   "--images", str(tmp_path / "rec/images"), "--model", "shapes-clip"],
        "label": ["eval", "label", "--images", str(tmp_path / "sem/images"),
                  "--labels", str(tmp_path / "sem/labels"), "--model", "shapes-clip",
                  "--classes", str(tmp_path / "sem/classes.txt")],
    }
    for name, argv in runs.items():
        local = _run(capsys, argv)
        out = tmp_path / f"run_{name}"
        _run(capsys, argv + ["--out", str(out), "--limit", "2"])  # part of it locally,
        on_ray = _run(capsys, argv + ["--out", str(out), "--ray"])  # the rest on Ray
        assert on_ray == local, name
        rows = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()]
        assert len({r["key"] for r in rows}) == len(rows)  # nothing done twice
