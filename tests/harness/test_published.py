"""The report of the published ABO outputs reproduces the fixtures README's per-video F1."""

import pytest

from bench.harness import RunConfig, run_benchmark
from bench.report import make_report
from bench.results import read_table

# video -> (F1 suns, F1 stnn) of STNeuroNet and Suite2p, from ../shared/fixtures/README.md
EXPECTED = {
    "STNeuroNet": {"501484643": (0.8467, 0.8502), "501574836": (0.8034, 0.8034)},
    "Suite2p": {"501484643": (0.6944, 0.7738), "501574836": (0.6628, 0.7407)},
}


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["suns", "stnn"])
def test_published_outputs_reproduce_the_fixture_scores(fixtures_dir, tmp_path, monkeypatch, rule):
    d = fixtures_dir / "abo275"
    monkeypatch.setenv("BENCH_PUBLISHED_ABO275", str(d))
    methods = (f"STNeuroNet=files:{d}/ST_{{recording}}.mat", f"Suite2p=files:{d}/S2P_{{recording}}.mat")
    cfg = RunConfig("abo275-published", methods, tune="none", split="all", graders=("final",), rule=rule)
    table = run_benchmark(cfg, tmp_path / "run", progress=False)
    rows = read_table(table)
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    for r in rows:
        assert round(r["f1"], 4) == EXPECTED[r["method"]][r["recording"]][0 if rule == "suns" else 1]
    text = make_report(table, tmp_path / "report").read_text()
    assert "## F1 per recording (ground truth: final)" in text
    assert "| STNeuroNet | 0.8467 | 0.8034 |" in text if rule == "suns" else "| STNeuroNet | 0.8502 | 0.8034 |" in text
