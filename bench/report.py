"""Reports regenerated from a results table: Markdown, HTML, CSV tables and figures.

A report is a pure function of ``results.csv`` (and the ``run.json`` beside
it, for the hardware and versions): running it twice gives identical tables
and figures (SVG metadata and hash salt are fixed).
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.online import batch_final_f1, f1_over_time, online_section, read_online_csv
from bench.results import atomic_write_text, read_table
from bench.stats import compare_methods, mean_sd, stars
from datasets.errors import InputError
from datasets.records import pick_grader

__all__ = ["make_report", "summary_table"]

log = logging.getLogger(__name__)

METRICS = ("recall", "precision", "f1")


def _ok(rows):
    return [r for r in rows if r["status"] == "ok"]


def _per_recording(rows, grader: str, metric: str) -> dict[str, dict[str, float]]:
    """method -> recording -> value (one value per recording: its held-out fold)."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for r in _ok(rows):
        if r["grader"] == grader:
            out[r["method"]][r["recording"]] = r[metric]
    return out


def summary_table(rows: list[dict], grader: str) -> list[dict]:
    """Mean ± SD of recall, precision, F1 and frames/s per method (Table S2-like), with tests against the best F1."""
    methods = sorted({r["method"] for r in rows})
    f1 = _per_recording(rows, grader, "f1")
    best = max((m for m in methods if f1.get(m)), key=lambda m: np.mean(list(f1[m].values())), default=None)
    comps = {}
    if best is not None:
        recs = sorted({k for m in f1 for k in f1[m]})
        scores = {m: [f1[m].get(k, np.nan) for k in recs] for m in methods if f1.get(m)}
        for c in compare_methods(scores):
            if best in (c.a, c.b):
                comps[c.b if c.a == best else c.a] = c
    table = []
    for m in methods:
        mrows = [r for r in rows if r["method"] == m and r["grader"] in (grader, "")]
        status = sorted({r["status"] for r in mrows}) or ["no rows"]
        entry = {"method": m, "grader": grader, "status": ",".join(status)}
        for metric in (*METRICS, "frames_per_s"):
            vals = list(_per_recording(rows, grader, metric).get(m, {}).values())
            entry[metric] = mean_sd(vals)
        c = comps.get(m)
        entry["p_vs_best"] = c.p_holm if c else float("nan")
        # c.effect > 0 means c.a scored higher; report it from method m's side.
        entry["effect_vs_best"] = (c.effect if c.a == m else -c.effect) if c else float("nan")
        entry["best"] = m == best
        table.append(entry)
    return table


def _fmt_ms(ms, digits=2) -> str:
    mean, sd, n = ms
    if n == 0:
        return "–"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def _markdown_table(table: list[dict], n_rec: int) -> str:
    lines = [
        "| method | recall | precision | F1 | frames/s | vs best F1 (Holm p, effect) | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in table:
        p = e["p_vs_best"]
        test = (
            "best" if e["best"] else ("–" if not math.isfinite(p) else f"{p:.3g}{stars(p)}, {e['effect_vs_best']:+.2f}")
        )
        lines.append(
            f"| {e['method']} | {_fmt_ms(e['recall'])} | {_fmt_ms(e['precision'])} | {_fmt_ms(e['f1'])} "
            f"| {_fmt_ms(e['frames_per_s'], 1)} | {test} | {e['status']} |"
        )
    return "\n".join(lines)


def make_report(results: Path, out: Path, *, figures: bool = True) -> Path:
    """Write ``report.md``, ``report.html``, ``summary.csv`` and figures for a results table.

    Parameters
    ----------
    results : Path
        ``results.csv`` or the run folder holding it.
    out : Path
        Report folder (created).
    figures : bool
        Also draw PNG and SVG figures.

    Returns
    -------
    Path
        The Markdown report.
    """
    results = Path(results)
    if results.is_dir():
        results = results / "results.csv"
    rows = read_table(results)
    if not rows:
        raise InputError(
            "the results table has a header but no rows: nothing to report",
            path=results,
            hint="run the methods first ('python -m bench run'); failed units also leave rows",
        )
    meta_path = results.with_name("run.json")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    datasets = sorted({r["dataset"] for r in rows})
    graders = sorted({r["grader"] for r in rows if r["grader"]})
    default = pick_grader(graders, meta.get("default_grader") or "default") or ""
    graders = [default] + [g for g in graders if g != default] if graders else []
    n_rec = len({r["recording"] for r in rows})

    md = [f"# Benchmark report: {', '.join(datasets)}", ""]
    cfg = meta.get("config", {})
    env = meta.get("environment", {})
    md += [
        f"Run `{meta.get('run_id', '?')}` ({meta.get('created', '?')}): tuning `{cfg.get('tune', '?')}`, "
        f"split `{cfg.get('split', '?')}`, matching rule `{cfg.get('rule', '?')}` at IoU ≥ 0.5, "
        f"{n_rec} recordings.",
        f"Hardware: {env.get('cpus_usable', '?')} × {env.get('cpu', '?')}; GPU: {env.get('gpu') or 'none'}. "
        f"Python {env.get('python', '?')}; "
        + ", ".join(f"{k} {v}" for k, v in sorted(env.get("versions", {}).items())),
        "",
        "Values are mean ± SD over recordings"
        + (" (each scored with the parameters tuned on the others). " if cfg.get("tune") == "loo"
           else " (default parameters; no tuning). ")
        +
        "Tests: two-sided Wilcoxon rank-sum against the method with the best mean F1, Holm-corrected over all "
        "pairs; * P < 0.05, ** P < 0.005; effect = rank-biserial correlation (positive: better than the best). "
        f"With {n_rec} recordings per method the smallest attainable p is "
        f"{_floor(n_rec):.2g}.",
        "",
    ]
    summary_rows = []
    for g in graders:
        table = summary_table(rows, g)
        md += [f"## Ground truth: {g}", "", _markdown_table(table, n_rec), ""]
        for e in table:
            summary_rows.append(_flat(e))
    md += _per_recording_section(rows, default)
    md += _weights_section(rows, meta)
    failures = [r for r in rows if r["status"] != "ok"]
    if failures:
        md += ["## Failures", "", "| method | recording | status | message |", "|---|---|---|---|"]
        seen = set()
        for r in sorted(failures, key=lambda r: (r["method"], r["recording"])):
            k = (r["method"], r["recording"], r["status"])
            if k in seen:
                continue
            seen.add(k)
            msg = (r["error"] or "").replace("|", "\\|").replace("\n", " ")[:200]
            md += [f"| {r['method']} | {r['recording']} | {r['status']} | {msg} |"]
        md.append("")
    run_dir = results.parent
    neurons = _read_csv(run_dir / "neurons.csv")
    md += _psnr_section(neurons)
    md += _grader_section(_read_csv(run_dir / "graders.csv"))
    online = read_online_csv(run_dir / "online.csv")
    md += online_section(online, rows, default)
    if figures and graders:
        from bench.figures import detection_vs_psnr, f1_vs_speed, f1_vs_time, metric_panels

        md += ["## Figures", ""]
        timed = any(r["status"] == "ok" and math.isfinite(r["frames_per_s"]) for r in rows)
        panels = (("scores", metric_panels), ("f1_vs_speed", f1_vs_speed)) if timed else (("scores", metric_panels),)
        for name, fn in panels:
            for ext in ("png", "svg"):
                fn(rows, default, out / f"{name}.{ext}")
            md += [f"![{name}]({name}.png)", ""]
        if any(np.isfinite(float(r["psnr"])) for r in neurons):
            for ext in ("png", "svg"):
                detection_vs_psnr(neurons, out / f"detection_vs_psnr.{ext}")
            md += ["![detection_vs_psnr](detection_vs_psnr.png)", ""]
        curves = f1_over_time(online, default)
        if curves:
            batch = batch_final_f1(rows, default, exclude=curves)
            for ext in ("png", "svg"):
                f1_vs_time(curves, batch, default, out / f"f1_vs_time.{ext}")
            md += ["![f1_vs_time](f1_vs_time.png)", ""]
        if _overlay(run_dir / "overlay", out):
            md += ["![overlay](overlay.png)", ""]
    md += ["", f"Generated by `python -m bench report` from `{results.name}`."]
    text = "\n".join(md) + "\n"
    atomic_write_text(out / "report.md", text)
    atomic_write_text(out / "report.html", _html(text))
    _write_summary_csv(summary_rows, out / "summary.csv")
    return out / "report.md"


def _weights_section(rows: list[dict], meta: dict) -> list[str]:
    """Which rows used shipped weights and which weights trained in the run (tables from older runs: none)."""
    learned = [r for r in rows if r.get("weights")]
    if not learned:
        return []
    md = ["## Weights of the learning methods", "",
          "| method | weights | trained on | key | training s | iterations | device |", "|---|---|---|---|---|---|---|"]
    seen = set()
    for r in sorted(learned, key=lambda r: (r["method"], r.get("weights_key") or "")):
        k = (r["method"], r["weights"], r.get("weights_key"))
        if k in seen:
            continue
        seen.add(k)
        trained = r["weights"] == "fold-trained"
        secs = r.get("train_s")
        md.append(
            f"| {r['method']} | {r['weights']} | {(r.get('tuned_on') or '').replace(';', ', ') if trained else '—'} "
            f"| {r.get('weights_key') or '—'} | {f'{secs:.0f}' if trained and secs == secs else '—'} "
            f"| {r.get('train_iterations') or '—'} | {r.get('train_device') or '—'} |"
        )
    md.append("")
    md += [f"Note: {n}" for n in meta.get("notes", [])]
    return md + ([""] if meta.get("notes") else [])


def _read_csv(path: Path) -> list[dict]:
    import csv

    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _per_recording_section(rows: list[dict], grader: str) -> list[str]:
    """F1 of every method on every recording (ground truth ``grader``)."""
    f1 = _per_recording(rows, grader, "f1")
    if not f1:
        return []
    recs = sorted({k for m in f1 for k in f1[m]})
    lines = [f"## F1 per recording (ground truth: {grader})", "", "| method | " + " | ".join(recs) + " |",
             "|---|" + "---|" * len(recs)]
    for m in sorted(f1):
        lines.append(f"| {m} | " + " | ".join(f"{f1[m][k]:.4f}" if k in f1[m] else "–" for k in recs) + " |")
    return lines + [""]


def _psnr_section(neurons: list[dict]) -> list[str]:
    """Detection rate per PSNR bin per method (Fig. 4E as a table)."""
    from bench.psnr import DEFAULT_BINS, detection_by_bin

    if not neurons or not any(np.isfinite(float(r["psnr"])) for r in neurons):
        return []
    bins = DEFAULT_BINS
    labels = [f"{lo:g}–{hi:g}" if math.isfinite(hi) else f"≥ {lo:g}" for lo, hi in zip(bins[:-1], bins[1:])]
    by = defaultdict(list)
    for r in neurons:
        by[r["method"]].append((float(r["psnr"]), int(r["detected"])))
    first = next(iter(by.values()))
    counts = [b["n"] for b in detection_by_bin(np.array([p for p, _ in first]), np.zeros(len(first), bool), bins)]
    lines = [
        "## Detection against PSNR",
        "",
        "Share of ground-truth neurons detected, per PSNR bin of the neuron (overlap-demixed trace, 0.7 × 5 µm "
        "neuropil annulus subtracted, 60 s moving-median baseline; PSNR = peak ΔF / noise SD over inactive "
        "intervals).",
        "",
        "| method | " + " | ".join(f"{lab} (n={c})" for lab, c in zip(labels, counts)) + " |",
        "|---|" + "---|" * len(labels),
    ]
    for m in sorted(by):
        psnr, det = (np.asarray(v) for v in zip(*by[m]))
        shares = [b["share"] for b in detection_by_bin(psnr, det.astype(bool), bins)]
        lines.append(f"| {m} | " + " | ".join("–" if not math.isfinite(s) else f"{s:.2f}" for s in shares) + " |")
    return lines + [""]


def _grader_section(rows: list[dict]) -> list[str]:
    """Agreement between ground truths of the same recordings (F1 of one against the other)."""
    if not rows:
        return []
    pairs = defaultdict(list)
    for r in rows:
        pairs[(r["reference"], r["grader"])].append(float(r["f1"]))
    lines = ["## Agreement between ground truths", "", "| reference | scored | F1 mean ± SD | recordings |",
             "|---|---|---|---|"]
    for (a, b), v in sorted(pairs.items()):
        lines.append(f"| {a} | {b} | {_fmt_ms(mean_sd(v))} | {len(v)} |")
    return lines + [""]


def _overlay(folder: Path, out: Path) -> bool:
    from bench.figures import overlay
    from datasets.masks import Masks

    if not (folder / "correlation.npy").is_file():
        return False
    corr = np.load(folder / "correlation.npy")
    gt = Masks.load(folder / "gt.npz")
    methods = {p.stem.split("__", 1)[1]: Masks.load(p) for p in sorted(folder.glob("method__*.npz"))}
    rec = (folder / "recording.txt").read_text().strip() if (folder / "recording.txt").is_file() else ""
    # The recording's registration border ("T,B,L,R", written beside the material), drawn around the image.
    crop = None
    if (folder / "crop.txt").is_file():
        from datasets.borders import parse_crop

        crop = parse_crop((folder / "crop.txt").read_text().strip())
    for ext in ("png", "svg"):
        overlay(corr, gt, methods, out / f"overlay.{ext}", title=f"recording {rec}", crop=crop)
    return True


def _floor(n: int) -> float:
    from bench.stats import exact_p_floor

    return exact_p_floor(n, n) if n else float("nan")


def _flat(e: dict) -> dict:
    flat = {"method": e["method"], "grader": e["grader"], "status": e["status"]}
    for k in (*METRICS, "frames_per_s"):
        flat[f"{k}_mean"], flat[f"{k}_sd"], flat["n"] = e[k]
    flat["p_vs_best_holm"] = e["p_vs_best"]
    flat["effect_vs_best"] = e["effect_vs_best"]
    return flat


def _write_summary_csv(rows: list[dict], path: Path) -> None:
    import csv
    import io

    if not rows:
        atomic_write_text(path, "")
        return
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


def _html(markdown: str) -> str:
    """A static page: Markdown tables as HTML tables, images inline, the rest as paragraphs."""
    body = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append([c.strip() for c in lines[i].strip("|").split("|")])
                i += 1
            head, rest = block[0], [r for r in block[1:] if not set("".join(r)) <= set("-")]
            body.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>")
            body += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rest]
            body.append("</table>")
            continue
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("!["):
            src = line[line.index("(") + 1 : -1]
            body.append(f'<img src="{html.escape(src)}" alt="{html.escape(src)}" style="max-width:100%">')
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
        i += 1
    style = (
        "body{font-family:sans-serif;max-width:70em;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:3px 8px}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
