"""Realism statistics of a data set, side by side with the real ground truth (ABO 275 um or Neurofinder).

:func:`describe_dataset` measures, per recording: active and silent neuron
counts, density of active neurons (per um^2), median active-mask area (um^2),
the share of active masks overlapping another soma, the PSNR distribution
(when the recording carries a simulator truth file), and the contrast of the
active masks in the mean image, max projection and correlation image. The
reference block reads the STNeuroNet authors' final GT of ABO 275 um
(``GT_*.mat``, MATLAB v7.3, ``FinalMasks`` (N, 487, 487)) and the grader-1
GT of the Neurofinder test sets (``neurofinder-test/GT_*.mat``, 1.15 um/px),
and quotes the paper; a Neurofinder-like data set (``synthetic-neurofinder``)
is compared with the Neurofinder ranges, any other with ABO 275 um.
:func:`format_description` renders it as a plain-text table.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from datasets.masks import Masks
from datasets.movie_stats import REAL_NEUROFINDER, movie_statistics

__all__ = ["describe_dataset", "describe_recording", "reference_statistics", "format_description", "summary_images"]

logger = logging.getLogger(__name__)

#: Real-data targets: ABO 275 um GT has 235-355 active neurons on 487x487 px at 0.78 um/px with
#: median areas 156-188 px; the paper reports 0.0019 neurons/um^2 and a median area of 102.8 um^2.
ABO_FRAME_UM2 = (487 * 0.78) ** 2
REAL_RANGES = {
    "active_density_per_um2": [235 / ABO_FRAME_UM2, 355 / ABO_FRAME_UM2],
    "median_active_area_um2": [156 * 0.78**2, 188 * 0.78**2],
}
PAPER = {"active_density_per_um2": 0.0019, "median_active_area_um2": 102.8, "depth_um": 275}

#: Neurofinder 01/02/04 test sets, grader-1 GT of the cropped frames at 1.15 um/px: 123-330 neurons
#: (184 on 504x504, 123 on 504x504, 206 and 160 on 504x464, 149 and 330 on 480x416), median areas 78-147 px.
NEUROFINDER_UM_PER_PX = 1.15
_NF_GT = ((184, 504 * 504), (123, 504 * 504), (206, 504 * 464), (160, 504 * 464), (149, 480 * 416), (330, 480 * 416))
NEUROFINDER_RANGES = {
    "active_density_per_um2": [
        min(n / (px * NEUROFINDER_UM_PER_PX**2) for n, px in _NF_GT),
        max(n / (px * NEUROFINDER_UM_PER_PX**2) for n, px in _NF_GT),
    ],
    "median_active_area_um2": [78 * NEUROFINDER_UM_PER_PX**2, 147 * NEUROFINDER_UM_PER_PX**2],
}


def _kind(dataset) -> str:
    """Which real data set a data set is compared with: ``"neurofinder"`` or ``"abo275"``."""
    name = str(getattr(dataset, "name", ""))
    if "neurofinder" in name:
        return "neurofinder"
    ums = [r.um_per_px for r in dataset if getattr(r, "um_per_px", None)]
    return "neurofinder" if ums and float(np.median(ums)) > 1.0 else "abo275"


def summary_images(movie, max_frames: int = 1500, chunk: int | None = None) -> dict[str, np.ndarray]:
    """Mean image, max projection and correlation image (mean correlation with the 4 neighbours).

    Reads at most ``max_frames`` frames, ``chunk`` at a time (default: ~32 MB of float64 per chunk,
    so a 512x512 movie is read 16 frames at a time; constant memory).
    """
    t = min(movie.n_frames, max_frames)
    h, w = movie.frame_shape
    chunk = chunk or max(1, 2**22 // (h * w))
    s1 = np.zeros((h, w))
    s2 = np.zeros((h, w))
    sr = np.zeros((h, w - 1))
    sd = np.zeros((h - 1, w))
    mx = np.full((h, w), -np.inf)
    for start in range(0, t, chunk):
        x = movie.read(start, min(start + chunk, t)).astype(np.float64)
        s1 += x.sum(0)
        s2 += (x * x).sum(0)
        sr += (x[:, :, 1:] * x[:, :, :-1]).sum(0)
        sd += (x[:, 1:, :] * x[:, :-1, :]).sum(0)
        mx = np.maximum(mx, x.max(0))
    mean = s1 / max(t, 1)
    var = np.maximum(s2 / max(t, 1) - mean**2, 1e-12)
    sdv = np.sqrt(var)
    cr = (sr / max(t, 1) - mean[:, 1:] * mean[:, :-1]) / (sdv[:, 1:] * sdv[:, :-1])
    cd = (sd / max(t, 1) - mean[1:, :] * mean[:-1, :]) / (sdv[1:, :] * sdv[:-1, :])
    acc = np.zeros((h, w))
    cnt = np.zeros((h, w))
    acc[:, 1:] += cr
    acc[:, :-1] += cr
    acc[1:, :] += cd
    acc[:-1, :] += cd
    cnt[:, 1:] += 1
    cnt[:, :-1] += 1
    cnt[1:, :] += 1
    cnt[:-1, :] += 1
    return {"mean": mean, "max": mx, "corr": acc / cnt}


def _contrast(img: np.ndarray, inside: np.ndarray, outside: np.ndarray, ratio: bool) -> float | None:
    if not inside.any() or not outside.any():
        return None
    a, b = float(img[inside].mean()), float(img[outside].mean())
    if ratio:
        return a / b if b else None
    return a - b


def _truth(rec) -> dict | None:
    path = (rec.provenance or {}).get("truth_file")
    if not path or not Path(path).is_file():
        return None
    import h5py

    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in ("active", "silent", "overlapping", "psnr")}


def describe_recording(rec, *, images: bool = True) -> dict:
    """Statistics of one recording (JSON-able)."""
    # A user recording may have no ground truth: its movie statistics are still described.
    gt = rec.ground_truth("default") if "default" in rec.graders else None
    area_um2 = rec.frame_shape[0] * rec.frame_shape[1] * rec.um_per_px**2
    all_somata = rec.ground_truth("all_somata") if "all_somata" in rec.graders else None
    out: dict = {
        "name": rec.name,
        "frames": int(rec.n_frames),
        "frame_shape": list(rec.frame_shape),
        "fps": rec.fps,
        "um_per_px": rec.um_per_px,
        "indicator": rec.indicator,
        "n_active": None if gt is None else int(gt.n),
        "n_somata": None if all_somata is None else int(all_somata.n),
        "n_silent": None,
        "active_density_per_um2": None if gt is None else gt.n / area_um2,
        "median_active_area_um2": float(np.median(gt.areas)) * rec.um_per_px**2 if gt is not None and gt.n else None,
        "active_overlap_share": None,
        "psnr": None,
    }
    tr = _truth(rec)
    if tr is not None:
        act = tr["active"].astype(bool)
        ps = tr["psnr"][act]
        ps = ps[np.isfinite(ps)]
        out["n_silent"] = int(tr["silent"].sum())
        out["silent_share"] = float(tr["silent"].mean()) if tr["silent"].size else None
        out["active_overlap_share"] = float(tr["overlapping"][act].mean()) if act.any() else None
        if ps.size:
            q = np.percentile(ps, [10, 25, 50, 75, 90])
            out["psnr"] = {
                "p10": float(q[0]),
                "q25": float(q[1]),
                "median": float(q[2]),
                "q75": float(q[3]),
                "p90": float(q[4]),
                "share_below_5": float(np.mean(ps < 5)),
                "share_above_20": float(np.mean(ps > 20)),
            }
    elif all_somata is not None:
        out["n_silent"] = int(all_somata.n - gt.n)
    if images:
        out["movie"] = movie_statistics(rec.movie, gt, anatomical=all_somata).to_dict()
        if gt is None:
            return out
        imgs = summary_images(rec.movie)
        inside = gt.union()
        outside = ~(all_somata.union() if all_somata is not None else inside)
        out["contrast"] = {
            "mean_in_over_out": _contrast(imgs["mean"], inside, outside, True),
            "max_in_over_out": _contrast(imgs["max"], inside, outside, True),
            "corr_in_minus_out": _contrast(imgs["corr"], inside, outside, False),
        }
    return out


def _read_fixture(path: Path) -> Masks:
    import h5py

    with h5py.File(path, "r") as f:
        ds = f["FinalMasks"]
        n = ds.shape[0]
        stacks = [np.asarray(ds[i : i + 32]) != 0 for i in range(0, n, 32)]
    return Masks.from_dense(np.concatenate(stacks) if stacks else np.zeros((0, *ds.shape[1:]), bool))


def _overlap_share(m: Masks) -> float | None:
    """Share of masks sharing at least one pixel with another mask."""
    if m.n == 0:
        return None
    mat = m.matrix.astype(np.int32)
    inter = (mat @ mat.T).tocsr()
    inter.setdiag(0)
    inter.eliminate_zeros()
    return float(np.mean(np.diff(inter.indptr) > 0))


def _fixture_row(name: str, m: Masks, um_per_px: float) -> dict:
    return {
        "name": name,
        "n_active": int(m.n),
        "active_density_per_um2": m.n / (m.shape[0] * m.shape[1] * um_per_px**2),
        "median_active_area_um2": float(np.median(m.areas)) * um_per_px**2 if m.n else None,
        "median_active_area_px": float(np.median(m.areas)) if m.n else None,
        "active_overlap_share": _overlap_share(m),
    }


def reference_statistics(reference_dir: Path | None) -> dict:
    """Statistics of the real GT files under ``reference_dir`` plus the published values.

    ``reference_dir`` is the fixtures folder (with ``abo275/`` and
    ``neurofinder-test/``) or the ``abo275`` folder itself. The overlap share
    of the real GT counts GT masks sharing a pixel with another GT mask.
    """
    ref: dict = {
        "paper": PAPER,
        "real_ranges": REAL_RANGES,
        "neurofinder_ranges": NEUROFINDER_RANGES,
        "abo275": [],
        "neurofinder_test": [],
    }
    if reference_dir is None:
        return ref
    folder = Path(reference_dir)
    nf_folder = folder / "neurofinder-test"
    if (folder / "abo275").is_dir():
        folder = folder / "abo275"
    for path in sorted(folder.glob("GT_*.mat")):
        try:
            m = _read_fixture(path)
        except (OSError, KeyError) as exc:
            logger.warning("cannot read %s: %s", path, exc)
            continue
        ref["abo275"].append(_fixture_row(path.stem, m, 0.78))
    if nf_folder.is_dir():
        from datasets.errors import InputError
        from datasets.maskio import load_masks

        for path in sorted(nf_folder.glob("GT_*.mat")):
            try:
                m = load_masks(path).masks
            except (OSError, KeyError, InputError) as exc:
                logger.warning("cannot read %s: %s", path, exc)
                continue
            ref["neurofinder_test"].append(_fixture_row(path.stem, m, NEUROFINDER_UM_PER_PX))
    return ref


def describe_dataset(dataset, *, reference_dir: Path | None = None, images: bool = True) -> dict:
    """Per-recording realism statistics of ``dataset`` and the real reference (JSON-able dict).

    Parameters
    ----------
    dataset : datasets.Dataset
        Any loaded data set (synthetic recordings add silent counts and PSNR).
    reference_dir : Path, optional
        Folder holding ``GT_*.mat`` of ABO 275 um (``/work/shared/fixtures`` or its ``abo275``).
    images : bool
        Also compute summary-image contrasts (reads up to 1,500 frames per recording).
    """
    recs = [describe_recording(r, images=images) for r in dataset]
    summary = {}
    for key in ("n_active", "n_silent", "active_density_per_um2", "median_active_area_um2", "active_overlap_share"):
        vals = [r[key] for r in recs if r.get(key) is not None]
        summary[key] = float(np.median(vals)) if vals else None
    psn = [r["psnr"] for r in recs if r.get("psnr")]
    if psn:
        summary["psnr_share_below_5"] = float(np.mean([p["share_below_5"] for p in psn]))
        summary["psnr_share_above_20"] = float(np.mean([p["share_above_20"] for p in psn]))
    kind = _kind(dataset)
    ranges = NEUROFINDER_RANGES if kind == "neurofinder" else REAL_RANGES
    within = {}
    for key, (lo, hi) in ranges.items():
        vals = [r[key] for r in recs if r.get(key) is not None]
        within[key] = {"inside": int(sum(lo <= v <= hi for v in vals)), "of": len(vals), "range": [lo, hi]}
    return {
        "dataset": dataset.name,
        "compared_with": kind,
        "recordings": recs,
        "summary": summary,
        "within_real_range": within,
        "reference": reference_statistics(reference_dir),
    }


def _fmt(v, nd=4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.{nd}g}"
    return str(v)


def format_description(desc: dict) -> str:
    """A plain-text table of :func:`describe_dataset`'s output: one row per recording, then the references."""
    cols = [
        ("recording", lambda r: r["name"]),
        ("active", lambda r: _fmt(r["n_active"])),
        ("silent", lambda r: _fmt(r.get("n_silent"))),
        ("density/um2", lambda r: _fmt(r["active_density_per_um2"])),
        ("med.area um2", lambda r: _fmt(r["median_active_area_um2"])),
        ("overlap", lambda r: _fmt(r.get("active_overlap_share"), 2)),
        (
            "PSNR q25/med/q75",
            lambda r: "/".join(_fmt(r["psnr"][k], 3) for k in ("q25", "median", "q75")) if r.get("psnr") else "-",
        ),
        ("PSNR<5", lambda r: _fmt(r["psnr"]["share_below_5"], 2) if r.get("psnr") else "-"),
        ("PSNR>20", lambda r: _fmt(r["psnr"]["share_above_20"], 2) if r.get("psnr") else "-"),
        ("mean c.", lambda r: _fmt((r.get("contrast") or {}).get("mean_in_over_out"), 3)),
        ("max c.", lambda r: _fmt((r.get("contrast") or {}).get("max_in_over_out"), 3)),
        ("corr c.", lambda r: _fmt((r.get("contrast") or {}).get("corr_in_minus_out"), 3)),
    ]
    rows = [[c[0] for c in cols]] + [[f(r) for _, f in cols] for r in desc["recordings"]]
    ref = desc.get("reference", {})
    kind = desc.get("compared_with", "abo275")
    pad = ["-"] * (len(cols) - 6)
    if kind == "neurofinder":
        real_rows, ranges = ref.get("neurofinder_test", []), NEUROFINDER_RANGES
        label, counts = "Neurofinder test", "123-330"
    else:
        real_rows, ranges = ref.get("abo275", []), REAL_RANGES
        label, counts = "ABO 275 um", "235-355"
    for r in real_rows:
        rows.append(
            [
                f"real {r['name']}",
                str(r["n_active"]),
                "-",
                _fmt(r["active_density_per_um2"]),
                _fmt(r["median_active_area_um2"]),
                _fmt(r.get("active_overlap_share"), 2),
            ]
            + pad
        )
    lo_d, hi_d = ranges["active_density_per_um2"]
    lo_a, hi_a = ranges["median_active_area_um2"]
    rows.append([f"real {label} range", counts, "-", f"{lo_d:.4g}-{hi_d:.4g}", f"{lo_a:.4g}-{hi_a:.4g}", "-"] + pad)
    if kind != "neurofinder":
        paper = ref.get("paper", PAPER)
        rows.append(
            [
                "paper (275 um)",
                "-",
                "-",
                _fmt(paper["active_density_per_um2"]),
                _fmt(paper["median_active_area_um2"]),
                "-",
            ]
            + pad
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(cols))]
    lines = [f"data set {desc['dataset']}: {len(desc['recordings'])} recording(s)"]
    for k, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    s = desc.get("summary", {})
    within = desc.get("within_real_range", {})
    lines.append("")
    lines.append("median over recordings: " + ", ".join(f"{k} {_fmt(v)}" for k, v in s.items() if v is not None))
    lines.append(
        f"inside the real {label} range: " + ", ".join(f"{k} {v['inside']}/{v['of']}" for k, v in within.items())
    )
    lines.append(
        "overlap: share of active masks sharing a pixel with another soma (real: with another GT mask); "
        "contrast: mean/max = mean over active masks / mean outside all somata; corr = difference"
    )
    lines += ["", *format_movie_statistics(desc["recordings"])]
    return "\n".join(lines)


def format_movie_statistics(recordings: list[dict]) -> list[str]:
    """Lines of the photon-budget / correlation / border table (``datasets.movie_stats``) beside the real movie."""
    cols = [
        ("SD/mean (counts)", lambda m: f"{_fmt(m['median_sd'], 3)}/{_fmt(m['median_mean'], 3)}"),
        ("med. SD/mean", lambda m: _fmt(m["median_sd_over_mean"], 2)),
        ("corr med.", lambda m: _fmt(m["corr_median"], 2)),
        ("corr p99", lambda m: _fmt(m["corr_p99"], 2)),
        ("corr in GT", lambda m: _fmt(m["corr_median_in_gt"], 2)),
        ("in all cells", lambda m: _fmt(m.get("corr_median_in_all"), 2)),
        ("region px", lambda m: _fmt(m["median_region_px"], 3)),
        ("border L/R/T/B px", lambda m: "/".join(_fmt(m[f"border_{k}"]) for k in ("left", "right", "top", "bottom"))),
    ]
    rows = [["recording (first 600 frames)"] + [c[0] for c in cols]]
    rows += [[r["name"]] + [f(r["movie"]) for _, f in cols] for r in recordings if r.get("movie")]
    if len(rows) == 1:
        return []
    rows.append(["real Neurofinder 00.xx"] + [f(REAL_NEUROFINDER) for _, f in cols])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(
        "definitions (real-movie-stats.md): per-pixel temporal SD and mean; correlation image = mean Pearson "
        "correlation with the 8 np.roll neighbours, 8 px trimmed before the percentiles; in GT = median over the "
        "default ground truth's pixels, in all cells = over every labelled cell's (the real movie's GT is "
        "anatomical, silent cells included: compare it with 'in all cells'); border = "
        "columns/rows whose mean is below 1/4 of the interior"
    )
    return lines
