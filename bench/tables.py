"""Result rows from stored unit records: one row per (method, recording, fold, grader).

A pure function of the plan and the records (scores were stored with each
unit when it finished): nothing is scored here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from bench.plan import Plan, RunConfig, split_label
from bench.tuning import choose_points
from bench.units import SegmentUnit, params_hash
from datasets.records import Dataset, Recording

__all__ = ["Tables", "result_rows"]

_SCORE_COLUMNS = ("n_gt", "n_pred", "tp", "recall", "precision", "f1", "nf_combined")


@dataclass
class Tables:
    """Rows of ``results.csv`` and the unit record scored for each (method, recording)."""

    rows: list[dict]
    chosen: dict[tuple[str, str], dict]


def _unit_columns(unit: SegmentUnit, info: dict, train_records: Mapping[str, dict], learns: bool) -> dict:
    proc = info.get("process_s", math.nan)
    frames = info.get("frames") or 0
    ok = frames and proc and not math.isnan(proc) and proc > 0
    cols = {
        "params": info.get("params", unit.params),
        "params_hash": params_hash(info.get("params", unit.params)),
        "init_s": info.get("init_s", math.nan),
        "process_s": proc,
        "io_s": info.get("io_s", math.nan),
        "frames": frames,
        "frames_per_s": frames / proc if ok else math.nan,  # no movie read: no speed
        "peak_memory_mb": info.get("peak_memory_mb", math.nan),
        "status": info["status"],
        "error": info.get("error", ""),
        "versions": info.get("versions", {}),
        "crop": None if unit.recording.crop is None else ",".join(map(str, unit.recording.crop)),
    }
    if unit.train is not None:
        tr = train_records.get(unit.train.id, {})
        cols.update(
            weights="fold-trained",
            weights_key=unit.train.key,
            train_s=tr.get("train_s", math.nan),
            train_iterations=tr.get("iterations"),
            train_device=unit.train.device,
        )
    elif learns:
        cols.update(weights="shipped")
    return cols


def _score_rows(config: RunConfig, rec: Recording, info: dict) -> list[dict]:
    graders = rec.graders if config.graders is None else [g for g in config.graders if g in rec.graders]
    if not graders:
        return [{"grader": ""}]  # a failure (or a recording without ground truth) still leaves a row
    scores = (info.get("scores") or {}).get(config.rule, {})
    rows = []
    for g in graders:
        row = {"grader": g}
        if info["status"] == "ok" and g in scores:
            row.update({k: scores[g][k] for k in _SCORE_COLUMNS})
        else:
            row["n_gt"] = rec.ground_truth(g).n
        rows.append(row)
    return rows


def result_rows(
    config: RunConfig,
    ds: Dataset,
    recs: list[Recording],
    plan: Plan,
    records: Mapping[str, dict],
    train_records: Mapping[str, dict],
    base: dict,
) -> Tables:
    """Rows for every method of the run, leave-one-out choices applied.

    Parameters
    ----------
    records : mapping
        Segment unit id -> its record (with ``scores``).
    train_records : mapping
        Train unit id -> its manifest.
    base : dict
        Columns every row carries (run id, data set, hardware).
    """
    rows: list[dict] = []
    chosen: dict[tuple[str, str], dict] = {}
    by: dict[str, dict[str, list[tuple[SegmentUnit, dict]]]] = {}
    for u in plan.units:
        if u.id in records:
            by.setdefault(u.method, {}).setdefault(u.recording.name, []).append((u, records[u.id]))

    def emit(unit: SegmentUnit, info: dict, rec: Recording, extra: dict) -> None:
        chosen[(unit.method, rec.name)] = info
        for sr in _score_rows(config, rec, info):
            rows.append({**base, "recording": rec.name, "split": rec.split, "method": unit.method,
                         **extra, **_unit_columns(unit, info, train_records, unit.method in plan.train_modes), **sr})

    for label in (split_label(e)[0] for e in config.methods):
        if label in plan.failures:
            rows += [
                {**base, "recording": r.name, "split": r.split, "fold": -1, "method": label,
                 "status": "unavailable", "error": plan.failures[label]}
                for r in recs
            ]
            continue
        runs = by.get(label, {})
        # Weights trained in the run carry their own tuning (on their training recordings): no grid.
        trained = plan.train_modes.get(label) in ("split", "loo")
        if config.tune == "none" or trained:
            for rec in recs:
                for u, info in runs.get(rec.name, []):
                    tuned = ";".join(r.name for r in u.train.recordings) if u.train is not None else None
                    emit(u, info, rec, {"fold": -1, "tuned_on": tuned})
            continue
        f1: dict[str, dict[str, float]] = {}
        cands: dict[tuple[str, str], tuple[SegmentUnit, dict]] = {}
        for rec in recs:
            grader = ds.grader_for(rec)
            for u, info in runs.get(rec.name, []):
                pkey = params_hash(u.point)
                score = (info.get("scores") or {}).get(config.rule, {}).get(grader) if info["status"] == "ok" else None
                f1.setdefault(rec.name, {})[pkey] = score["f1"] if score else 0.0  # a failed point cannot win
                cands[(rec.name, pkey)] = (u, info)
        by_name = {r.name: r for r in recs}
        for c in choose_points(f1, ds.folds(recs)):
            u, info = cands[(c.held_out, c.point)]
            emit(u, info, by_name[c.held_out], {"fold": c.fold, "tuned_on": ";".join(c.tuned_on),
                                                 "tune_mean_f1": c.mean_f1})
    return Tables(rows, chosen)
