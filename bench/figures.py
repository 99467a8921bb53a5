"""Report figures (PNG and SVG), drawn deterministically from results rows."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

__all__ = ["metric_panels", "f1_vs_speed", "f1_vs_time", "save"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "bench", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def save(fig, path: Path) -> Path:
    """Save without timestamps so that identical inputs give identical files."""
    path = Path(path)
    meta = {"Date": None} if path.suffix == ".svg" else {}
    fig.savefig(path, dpi=150, bbox_inches="tight", metadata=meta)
    return path


def _values(rows, grader, metric):
    out = defaultdict(list)
    for r in rows:
        if r["status"] == "ok" and r["grader"] == grader and np.isfinite(r[metric]):
            out[r["method"]].append((r["recording"], r[metric]))
    return {m: [v for _, v in sorted(vals)] for m, vals in sorted(out.items())}


def metric_panels(rows, grader: str, path: Path) -> Path:
    """F1, recall and precision per method: mean ± SD bars with one point per recording (cf. the paper's Fig. 4A)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.4), sharey=True)
    for ax, metric in zip(axes, ("f1", "recall", "precision")):
        vals = _values(rows, grader, metric)
        names = list(vals)
        for i, m in enumerate(names):
            v = np.asarray(vals[m])
            ax.bar(
                i,
                v.mean(),
                yerr=v.std(ddof=1) if v.size > 1 else 0,
                color="#9ecae1",
                edgecolor="#3182bd",
                capsize=3,
                width=0.6,
            )
            jitter = np.linspace(-0.15, 0.15, v.size) if v.size > 1 else np.zeros(1)
            ax.plot(i + jitter, v, "o", ms=3, color="#08306b")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_title({"f1": "F1", "recall": "Recall", "precision": "Precision"}[metric])
        ax.set_ylim(0, 1.05)
    axes[0].set_ylabel(f"score (GT: {grader})")
    fig.tight_layout()
    out = save(fig, path)
    plt.close(fig)
    return out


def f1_vs_speed(rows, grader: str, path: Path) -> Path:
    """Mean F1 against mean processing speed per method (cf. the paper's Fig. 4B)."""
    plt = _plt()
    f1 = _values(rows, grader, "f1")
    fps = _values(rows, grader, "frames_per_s")
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    for m in sorted(set(f1) & set(fps)):
        x, y = np.asarray(fps[m]), np.asarray(f1[m])
        ax.errorbar(
            x.mean(),
            y.mean(),
            xerr=x.std(ddof=1) if x.size > 1 else 0,
            yerr=y.std(ddof=1) if y.size > 1 else 0,
            fmt="o",
            capsize=3,
            label=m,
        )
    ax.set_xscale("log")
    ax.set_xlabel("speed (frames / processing second, log scale)")
    ax.set_ylabel(f"F1 (GT: {grader})")
    ax.set_ylim(0, 1.05)
    if f1:
        ax.legend(frameon=False, fontsize=8, loc="lower right")
    fig.tight_layout()
    out = save(fig, path)
    plt.close(fig)
    return out


def detection_vs_psnr(neurons: list[dict], path: Path, bins=None) -> Path:
    """Share of GT neurons detected per PSNR bin, one line per method (cf. the paper's Fig. 4E)."""
    from bench.psnr import DEFAULT_BINS, detection_by_bin

    bins = DEFAULT_BINS if bins is None else bins
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    labels = [f"{lo:g}–{hi:g}" if np.isfinite(hi) else f"≥{lo:g}" for lo, hi in zip(bins[:-1], bins[1:])]
    by = defaultdict(list)
    for r in neurons:
        by[r["method"]].append((float(r["psnr"]), bool(int(r["detected"]))))
    for m in sorted(by):
        psnr, det = (np.asarray(v) for v in zip(*by[m]))
        share = [b["share"] for b in detection_by_bin(psnr, det, bins)]
        ax.plot(range(len(labels)), share, "o-", label=m)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel("PSNR of the GT neuron")
    ax.set_ylabel("share of GT neurons detected")
    ax.set_ylim(0, 1.05)
    if by:
        ax.legend(frameon=False, fontsize=8, loc="lower right")
    fig.tight_layout()
    out = save(fig, path)
    plt.close(fig)
    return out


def overlay(correlation: np.ndarray, gt, methods: dict, path: Path, title: str = "", crop=None) -> Path:
    """GT outlines (white) and each method's outlines on the correlation image, one panel per method (Fig. 3A).

    ``crop`` (top, bottom, left, right), the recording's registration border: the cut
    border is drawn hatched around the analysed field of view, in the file's frame.
    """
    plt = _plt()
    from skimage.segmentation import find_boundaries

    n = max(len(methods), 1)
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.5 * rows), squeeze=False)
    lo, hi = np.percentile(correlation, [1, 99.5])
    top, bottom, left, right = (int(v) for v in (crop or (0, 0, 0, 0)))
    pad = ((top, bottom), (left, right))
    cut = (top, bottom, left, right)
    # GT drawn just outside its masks and methods just inside theirs, so identical masks show both.
    gt_edge = find_boundaries(gt.to_label_image(), mode="outer") if gt.n else np.zeros(correlation.shape, bool)
    image = np.pad(correlation.astype(float), pad, constant_values=np.nan)
    for ax, (name, masks) in zip(axes.ravel(), sorted(methods.items()) or [("no method", None)]):
        # NaN (the cut border) is transparent, so the hatching below shows there only.
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest", zorder=1)
        rgba = np.zeros((*correlation.shape, 4))
        rgba[gt_edge] = (1, 1, 1, 0.9)
        if masks is not None and masks.n:
            edge = find_boundaries(masks.to_label_image(), mode="inner")
            rgba[edge] = (1.0, 0.35, 0.1, 0.9)
        ax.imshow(np.pad(rgba, (*pad, (0, 0))), interpolation="nearest", zorder=2)
        if any(cut):
            h, w = image.shape
            ax.add_patch(plt.Rectangle((-0.5, -0.5), w, h, fill=False, hatch="///", color="0.45", lw=0, zorder=0))
            ax.add_patch(
                plt.Rectangle((left - 0.5, top - 0.5), correlation.shape[1], correlation.shape[0], fill=False,
                              edgecolor="0.8", linestyle="--", lw=0.6, zorder=3)
            )
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    for ax in axes.ravel()[len(methods) :]:
        ax.set_axis_off()
    note = f"; hatched: registration border cut, T,B,L,R {','.join(map(str, cut))} px" if any(cut) else ""
    fig.suptitle(title + f"  (white: ground truth, orange: method{note})", fontsize=9)
    fig.tight_layout()
    out = save(fig, path)
    plt.close(fig)
    return out


def f1_vs_time(curves: dict, batch_f1: dict, grader: str, path: Path) -> Path:
    """Mean F1 (± SD band) against seconds into the recording per online method; batch final F1 as dashed lines.

    ``curves`` is :func:`bench.online.f1_over_time`, ``batch_f1`` :func:`bench.online.batch_final_f1`.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for m, c in sorted(curves.items()):
        t, f, sd = (np.asarray(v, float) for v in list(zip(*c))[:3])
        (line,) = ax.plot(t, f, "o-", ms=3, label=m)
        ax.fill_between(t, f - sd, f + sd, color=line.get_color(), alpha=0.15, lw=0)
    for i, (m, f) in enumerate(sorted(batch_f1.items())):
        ax.axhline(f, ls="--", lw=1, color=plt.cm.Greys(0.4 + 0.5 * i / max(len(batch_f1), 1)), label=f"{m} (batch)")
    ax.set_xlabel("time into the recording (s)")
    ax.set_ylabel(f"F1 (GT: {grader})")
    ax.set_ylim(0, 1.05)
    ax.set_xlim(left=0)
    if curves or batch_f1:
        ax.legend(frameon=False, fontsize=8, loc="lower right")
    fig.tight_layout()
    out = save(fig, path)
    plt.close(fig)
    return out
