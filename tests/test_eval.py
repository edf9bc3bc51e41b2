"""``regionlab eval``: the shared harness (subsets, resume, outputs, errors) and every task end
to end on ShapesWorld exports, checked against the in-process computations on the same scenes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from regionlab import cli
from regionlab.errors import InputError
from regionlab.eval import harness
from regionlab.eval.harness import EvalTask, Unit, run_eval, select

# ------------------------------------------------------------------------------ harness


class CountingTask(EvalTask):
    """Units 0..n-1 in groups of 3; a unit is 'correct' iff its number is even; counts calls."""

    name, unit = "count", "thing"

    def __init__(self, n=10, setting=1, fail_after=None):
        self.n, self.setting, self.fail_after = n, setting, fail_after
        self.computed: list[str] = []

    def spec(self):
        return "x:CountingTask", {"n": self.n, "setting": self.setting}

    def config(self):
        return {"task": self.name, "setting": self.setting}

    def units(self):
        return [Unit(str(i), str(i // 3)) for i in range(self.n)]

    def run_group(self, group, keys):
        if self.fail_after is not None and len(self.computed) >= self.fail_after:
            raise KeyboardInterrupt  # the run is killed
        self.computed += keys
        return [{"key": k, "correct": int(k) % 2 == 0} for k in keys]

    def summarize(self, rows):
        return {"n": len(rows), "accuracy": float(np.mean([r["correct"] for r in rows])),
                "keys": sorted(int(r["key"]) for r in rows)}

    def table(self, summary):
        return harness.markdown_table(["method", "set"], [["count", harness.pct(
            summary["accuracy"])]])


def test_select_first_n_or_seeded_draw_that_extends():
    units = [Unit(str(i), "g") for i in range(20)]
    assert [u.key for u in select(units, 3)] == ["0", "1", "2"]
    a, b = select(units, 5, seed=7), select(units, 12, seed=7)
    assert len(a) == 5 and {u.key for u in a} <= {u.key for u in b}  # a larger run extends
    assert [u.key for u in a] == sorted((u.key for u in a), key=int)  # file order kept
    assert a == select(units, 5, seed=7) and a != select(units, 5, seed=8)
    assert select(units, None, seed=3) == units
    with pytest.raises(InputError, match="at least 1"):
        select(units, 0)


def test_resume_after_limit_and_after_a_kill(tmp_path):
    out = tmp_path / "run"
    fresh = run_eval(CountingTask(), limit=None)
    # a quick subset first, then the full run resumes it
    t1 = CountingTask()
    s1 = run_eval(t1, out_dir=out, limit=4)
    assert t1.computed == ["0", "1", "2", "3", "4", "5"][:4] and s1["n"] == 4
    # killed during the second group
    t2 = CountingTask(fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        run_eval(t2, out_dir=out)
    assert t2.computed == ["4", "5"]  # units 0..3 were read back, 4 and 5 done, then killed
    # a half-written line (killed while writing) is dropped
    with open(out / "items.jsonl", "a") as fh:
        fh.write('{"key": "6", "corr')
    t3 = CountingTask()
    s3 = run_eval(t3, out_dir=out)
    assert t3.computed == ["6", "7", "8", "9"] and s3["resumed"] == 6
    assert {k: v for k, v in s3.items() if k not in ("seconds", "resumed", "out")} == \
        {k: v for k, v in fresh.items() if k not in ("seconds", "resumed")}
    lines = (out / "items.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["key"] for x in lines) == [str(i) for i in range(10)]
    assert json.loads((out / "summary.json").read_text())["accuracy"] == 0.5
    assert (out / "table.md").read_text() == "| method | set |\n|---|---|\n| count | 50.0 |\n"
    # nothing left: nothing computed
    t4 = CountingTask()
    assert run_eval(t4, out_dir=out)["resumed"] == 10 and t4.computed == []


def test_resume_with_other_settings_is_refused(tmp_path):
    run_eval(CountingTask(setting=1), out_dir=tmp_path, limit=2)
    with pytest.raises(InputError, match=r"other settings \(setting: 1 there, 2 now\)"):
        run_eval(CountingTask(setting=2), out_dir=tmp_path)


def test_progress_bar_shows_rate_and_eta(capsys):
    run_eval(CountingTask(n=4), progress=True)
    err = capsys.readouterr().err
    assert "4/4" in err and "thing/s" in err and "<" in err  # elapsed<remaining, rate


def test_malformed_reclip_file_names_the_file_and_line(tmp_path, capsys):
    good = {"file_name": "a.png", "image_id": 1, "ann_id": 5,
            "anns": [{"id": 5, "bbox": [0, 0, 4, 4]}], "sentences": [{"raw": "the red star"}]}
    bad = dict(good, ann_id=6, anns=[{"id": 6, "bbox": [0, 0, 4]}])
    refs = tmp_path / "refs.jsonl"
    refs.write_text(json.dumps(good) + "\n\n" + json.dumps(bad) + "\n")
    code = cli.main(["eval", "ground", "--refs", str(refs), "--images", str(tmp_path),
                     "--no-progress", "--json"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"malformed annotation file {refs}: line 3 (ann_id 6): anns[0] is not a box" in err
    for line, why in [("not json", "not valid JSON"), ("[1, 2]", "not a JSON object"),
                      (json.dumps(dict(good, sentences=[])), "no 'sentences'"),
                      (json.dumps({"anns": []}), "no 'file_name'")]:
        refs.write_text(line + "\n")
        assert cli.main(["eval", "ground", "--refs", str(refs), "--images", str(tmp_path),
                         "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"{refs}: line 1" in err and why in err, err
