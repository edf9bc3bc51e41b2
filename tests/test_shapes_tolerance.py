"""The re-run tolerance check: targets and allowed differences to the shipped CLIP."""

import copy
import json

import pytest

from regionlab.training import recipe, tolerance


def result(zs=0.975, shifted=0.907, crops=0.998, dice=0.457, top1=0.918, mi=0.800, split="test",
           n=451):
    return {"split": split, "n_masks": n, "zero_shot": zs, "zero_shot_shifted": shifted,
            "masked_crop": crops,
            "legrad": {"legrad_dice": dice, "map_top1": top1},
            "region_acc": {"maskinversion": {"acc1": mi}}}


def by_metric(rows):
    return {r["metric"]: r for r in rows}


def test_within_tolerance_and_targets_passes():
    rows = tolerance.check(result(), result(zs=0.951, dice=0.430, top1=0.861, mi=0.755))
    assert tolerance.passes(rows)
    assert by_metric(rows)["legrad.map_top1"]["difference"] == pytest.approx(-0.057)


def test_outside_tolerance_fails_even_above_target():
    rows = tolerance.check(result(zs=0.99), result(zs=0.955))
    r = by_metric(rows)["zero_shot"]
    assert r["meets_target"] and not r["within_tolerance"] and not tolerance.passes(rows)


def test_below_target_fails_even_within_tolerance():
    rows = tolerance.check(result(mi=0.76), result(mi=0.74))
    r = by_metric(rows)["region_acc.maskinversion.acc1"]
    assert r["within_tolerance"] and not r["meets_target"] and not tolerance.passes(rows)


def test_val_split_and_missing_metric_are_refused():
    with pytest.raises(ValueError, match="split 'val'"):
        tolerance.check(result(), result(split="val"))
    with pytest.raises(ValueError, match="different scenes"):
        tolerance.check(result(), result(n=1350))
    with pytest.raises(ValueError, match="same --first"):
        tolerance.check(result(), {**result(), "first": 600})
    broken = copy.deepcopy(result())
    del broken["legrad"]["map_top1"]
    with pytest.raises(KeyError, match="map_top1"):
        tolerance.check(result(), broken)


def test_cli_exit_status_and_output(tmp_path, capsys):
    shipped, good, bad = (tmp_path / n for n in ("shipped.json", "good.json", "bad.json"))
    shipped.write_text(json.dumps(result()))
    good.write_text(json.dumps(result(zs=0.97)))
    bad.write_text(json.dumps(result(mi=0.70)))
    with pytest.raises(SystemExit) as e:
        recipe.main(["--check", str(good), "--shipped", str(shipped)])
    assert e.value.code == 0 and json.loads(capsys.readouterr().out)["passes"] is True
    with pytest.raises(SystemExit) as e:
        recipe.main(["--check", str(bad), "--shipped", str(shipped)])
    assert e.value.code == 1 and json.loads(capsys.readouterr().out)["passes"] is False
    with pytest.raises(SystemExit) as e:
        recipe.main(["--check", str(tmp_path / "absent.json"), "--shipped", str(shipped)])
    assert e.value.code == 2 and "cannot read" in capsys.readouterr().err


def test_first_gives_later_scenes_of_the_same_sample():
    from regionlab.eval import shapes_regions as ev

    head, tail = ev.multi_scenes(3), ev.multi_scenes(2, first=1)
    assert all((a.image == b.image).all() for a, b in zip(head[1:], tail))
    assert not (head[0].image == tail[0].image).all()
