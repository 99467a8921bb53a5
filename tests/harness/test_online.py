"""F1 against time for online methods: scoring snapshots, online.csv, the report's table and figure."""

from __future__ import annotations

import math

import pytest

from bench.online import (
    batch_final_f1,
    f1_over_time,
    online_section,
    read_online_csv,
    score_snapshots,
    write_online_csv,
)
from bench.report import make_report
from bench.results import COLUMNS, write_table
from datasets.masks import Masks
from methods.base import Segmentation
from tests.conftest import disk_masks

SHAPE = (48, 48)
CENTRES = [(10, 10), (10, 35), (35, 10), (35, 35)]


def _snapshots():
    gt = disk_masks(CENTRES, 4, SHAPE)
    snaps = [
        (20.0, disk_masks(CENTRES[:1], 4, SHAPE)),
        (40.0, disk_masks(CENTRES[:2] + [(24, 24)], 4, SHAPE)),
        (60.0, disk_masks(CENTRES, 4, SHAPE)),
    ]
    return gt, snaps


def test_score_snapshots_rows():
    gt, snaps = _snapshots()
    rows = score_snapshots("stnn-online", "rec0", list(reversed(snaps)), gt)
    assert [r["t_s"] for r in rows] == [20.0, 40.0, 60.0]
    assert [r["tp"] for r in rows] == [1, 2, 4]
    assert rows[0]["recall"] == pytest.approx(0.25) and rows[0]["precision"] == pytest.approx(1.0)
    assert rows[1]["precision"] == pytest.approx(2 / 3)
    assert rows[2]["f1"] == pytest.approx(1.0)
    assert all(r["method"] == "stnn-online" and r["recording"] == "rec0" and r["n_gt"] == 4 for r in rows)


def test_online_csv_round_trip_and_curves(tmp_path):
    gt, snaps = _snapshots()
    rows = score_snapshots("m", "a", snaps, gt) + score_snapshots("m", "b", snaps[:2], gt)
    path = write_online_csv(rows, tmp_path / "online.csv")
    back = read_online_csv(path)
    assert len(back) == 5 and back[0]["t_s"] == 20.0 and isinstance(back[0]["tp"], int)
    curves = f1_over_time(back, "default")
    t, f, sd, n = curves["m"][0]
    assert (t, n) == (20.0, 2) and f == pytest.approx(0.4) and sd == 0.0
    assert curves["m"][-1][3] == 1  # only recording a reached 60 s
    assert read_online_csv(tmp_path / "missing.csv") == []


def _result_row(method, recording, f1):
    row = {c: "" for c in COLUMNS}
    row.update(
        run_id="r",
        dataset="d",
        recording=recording,
        split="test",
        fold=0,
        method=method,
        params="{}",
        grader="default",
        n_gt=4,
        n_pred=4,
        tp=4,
        recall=f1,
        precision=f1,
        f1=f1,
        init_s=0.0,
        process_s=1.0,
        frames=100,
        frames_per_s=100.0,
        status="ok",
    )
    return row


def test_report_draws_f1_against_time_when_online_csv_exists(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = [_result_row(m, r, f) for m, f in (("suite2p", 0.5), ("stnn-online", 1.0)) for r in ("a", "b")]
    write_table(rows, run / "results.csv")
    text = make_report(run, tmp_path / "rep0").read_text()
    assert "F1 against time" not in text
    gt, snaps = _snapshots()
    write_online_csv(score_snapshots("stnn-online", "a", snaps, gt), run / "online.csv")
    text = make_report(run, tmp_path / "rep").read_text()
    assert "## F1 against time into the recording (ground truth: default)" in text
    assert "| stnn-online | 0.400 | 0.571 | 1.000 |" in text
    assert "| suite2p (batch, final) |  |  | 0.500 |" in text
    assert (tmp_path / "rep" / "f1_vs_time.png").is_file() and (tmp_path / "rep" / "f1_vs_time.svg").is_file()
    assert batch_final_f1(rows, "default", exclude=["stnn-online"]) == {"suite2p": 0.5}
    assert online_section([], rows, "default") == []


def test_snapshots_survive_the_segmentation_files(tmp_path):
    gt, snaps = _snapshots()
    snaps.append((80.0, Masks.empty(SHAPE)))
    back = Segmentation.load(Segmentation(gt, snapshots=snaps).save(tmp_path / "seg")).snapshots
    assert [t for t, _ in back] == [t for t, _ in snaps]
    assert all(a == b for (_, a), (_, b) in zip(back, snaps))
    assert not math.isnan(score_snapshots("m", "r", back, gt)[-1]["recall"])


@pytest.mark.slow
def test_a_run_with_an_online_method_writes_online_csv_and_the_figure(tmp_path):
    from bench.harness import RunConfig, run_benchmark
    from bench.report import make_report

    cfg = RunConfig("synthetic-tiny", ("stnn-online", "stnn"), tune="none", split="test", train="shipped")
    table = run_benchmark(cfg, tmp_path / "run", progress=False)
    rows = read_online_csv(tmp_path / "run" / "online.csv")
    assert rows and {r["method"] for r in rows} == {"stnn-online"} and {r["recording"] for r in rows} == {"tiny01"}
    assert all(0 <= r["f1"] <= 1 and r["t_s"] > 0 for r in rows)
    make_report(table, tmp_path / "report")
    assert (tmp_path / "report" / "f1_vs_time.png").is_file()
