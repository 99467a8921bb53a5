"""A one-page figure of a recording beside its ground truth, to judge realism at a glance.

Top row: the movie's mean image, its correlation image, and the mean image
with the ground-truth outlines (active somata green, silent or sub-threshold
somata red). Bottom: a few traces measured on the movie (grey) with the
simulator's noiseless dF/F (colour) and spike ticks, for synthetic recordings;
for real recordings, the measured traces only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from datasets.traces import region_traces

__all__ = ["show_recording"]


def _outline(ax, masks, color: str) -> None:
    from skimage import measure

    for i in range(masks.n):
        r, c = masks.coordinates(i)
        if r.size == 0:
            continue
        r0, c0 = r.min() - 1, c.min() - 1
        img = np.zeros((r.max() - r0 + 2, c.max() - c0 + 2))
        img[r - r0, c - c0] = 1
        for cont in measure.find_contours(img, 0.5):
            ax.plot(cont[:, 1] + c0, cont[:, 0] + r0, color=color, lw=0.6)


def show_recording(recording, out_png: Path, *, n_traces: int = 5, max_frames: int = 1500) -> Path:
    """Write a PNG summary of ``recording`` to ``out_png`` and return its path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from datasets.describe import summary_images

    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    imgs = summary_images(recording.movie, max_frames=max_frames)
    gt = recording.ground_truth("default")
    all_somata = recording.ground_truth("all_somata") if "all_somata" in recording.graders else None
    truth = None
    path = (recording.provenance or {}).get("truth_file")
    if path and Path(path).is_file():
        import h5py

        with h5py.File(path, "r") as f:
            truth = {k: f[k][()] for k in ("active", "traces", "noiseless_dff", "spike_times", "spike_indptr", "psnr")}

    fig = plt.figure(figsize=(15, 9.5), dpi=110)
    gs = fig.add_gridspec(2, 3, height_ratios=[1.15, 1.0], hspace=0.25, wspace=0.12)
    lo, hi = np.percentile(imgs["mean"], [1, 99.7])
    ax = fig.add_subplot(gs[0, 0])
    ax.imshow(imgs["mean"], cmap="gray", vmin=lo, vmax=hi)
    ax.set_title("mean image")
    ax = fig.add_subplot(gs[0, 1])
    c = imgs["corr"]
    ax.imshow(c, cmap="magma", vmin=np.percentile(c, 1), vmax=np.percentile(c, 99.7))
    ax.set_title("correlation image")
    ax = fig.add_subplot(gs[0, 2])
    ax.imshow(imgs["mean"], cmap="gray", vmin=lo, vmax=hi)
    if all_somata is not None and truth is not None:
        _outline(ax, all_somata.subset(np.flatnonzero(~truth["active"].astype(bool))), "tab:red")
    _outline(ax, gt, "lime")
    n_other = (all_somata.n - gt.n) if all_somata is not None else 0
    ax.set_title(f"ground truth: {gt.n} active (green), {n_other} not active (red)")
    for a in fig.axes:
        a.set_xticks([])
        a.set_yticks([])

    ax = fig.add_subplot(gs[1, :])
    fps = recording.fps
    if truth is not None:
        act = np.flatnonzero(truth["active"].astype(bool) & np.isfinite(truth["psnr"]))
        order = act[np.argsort(truth["psnr"][act])]
        # Spread the examples over the PSNR range: from barely detectable to obvious.
        pick = order[np.linspace(0, order.size - 1, min(n_traces, order.size)).astype(int)] if order.size else act
        t = np.arange(truth["traces"].shape[1]) / fps
        for k, i in enumerate(pick):
            tr = truth["traces"][i].astype(float)
            x = tr - np.median(tr)
            dff = truth["noiseless_dff"][i].astype(float)
            # Put the measured trace on the dF/F scale of the truth (least-squares gain).
            gain = float(x @ dff) / float(x @ x) if float(x @ x) > 0 else 1.0
            off = -2.2 * k
            ax.plot(t, dff + off, color=f"C{k}", lw=1.0)
            ax.plot(t, gain * x + off, color="0.35", lw=0.5, alpha=0.8)
            st = truth["spike_times"][truth["spike_indptr"][i] : truth["spike_indptr"][i + 1]]
            ax.plot(st, np.full(st.size, off + 1.6), "|", color=f"C{k}", ms=5)
            ax.text(t[-1] * 1.005, off, f"#{i}\nPSNR {truth['psnr'][i]:.1f}", fontsize=8, va="center")
        ax.set_title(
            "measured neuropil-corrected traces (grey, scaled to dF/F) and noiseless dF/F with spikes (colour)"
        )
        ax.set_yticks([])
    else:
        mean = imgs["mean"]
        first = gt.subset(np.arange(min(n_traces, gt.n)))
        # Mean over each mask's pixels, streamed in chunks (the movie is never read whole).
        weights = sp.diags(1.0 / np.maximum(first.areas, 1)) @ first.matrix.astype(np.float64)
        traces = region_traces(recording.movie, weights, n_frames=max_frames)
        for k, tr in enumerate(traces):
            r, cc = gt.coordinates(k)
            ax.plot(np.arange(tr.size) / fps, tr / max(mean[r, cc].mean(), 1e-9) - 1.5 * k, lw=0.6)
        ax.set_title("mean trace of the first ground-truth masks")
    ax.set_xlabel("time (s)")
    fig.suptitle(
        f"{recording.name}: {recording.n_frames} frames {recording.frame_shape[0]}x{recording.frame_shape[1]} px, "
        f"{recording.um_per_px:g} um/px, {fps:g} Hz, {recording.indicator or ''}",
        fontsize=12,
    )
    fig.savefig(out_png, bbox_inches="tight")
    plt.close(fig)
    return out_png
