"""Report figures (PNG and SVG), drawn deterministically from results rows."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

__all__ = ["metric_panels", "f1_vs_speed", "save"]


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
