"""The ``python -m bench`` command line.

Output here is for people (and ``--json`` for programs); library code logs.
Errors a user can fix (:class:`datasets.errors.InputError`) print one line
naming the input and exit with code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from datasets.errors import InputError, naming

log = logging.getLogger("bench")

EXIT_INPUT = 2


def _parse_shape(text: str) -> tuple[int, int]:
    try:
        rows, cols = (int(v) for v in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ROWSxCOLS, e.g. 512x512, got {text!r}") from None
    if rows <= 0 or cols <= 0:
        raise argparse.ArgumentTypeError(f"frame size must be positive, got {text!r}")
    return rows, cols


def _parse_axes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated axes, e.g. 2,0,1, got {text!r}") from None


def _named_input(flag: str, load, path, **kwargs):
    """``load(path, **kwargs)``, with an input error prefixed by the flag that named the file."""
    try:
        return load(path, **kwargs)
    except InputError as exc:
        raise naming(exc, flag, path) from exc


def _check_positive(flag: str, value: float | None, *, upper: float | None = None) -> None:
    """Refuse a numeric option that is not > 0 (and <= ``upper``); None means unset."""
    if value is None:
        return
    if not (value > 0 and (upper is None or value <= upper)):  # also catches NaN
        bound = f"in (0, {upper:g}]" if upper is not None else "> 0"
        raise InputError(f"{flag} must be {bound}, got {value:g}")


# ---------------------------------------------------------------------------- score
def cmd_score(args: argparse.Namespace) -> int:
    from bench.metrics import match, neurofinder_combined
    from datasets.maskio import load_masks

    _check_positive("--iou", args.iou, upper=1.0)
    _check_positive("--centroid-gate", args.centroid_gate)
    _check_positive("--nf-distance", args.nf_distance)
    gt = _named_input("--gt", load_masks, args.gt, var=args.gt_var, axes=args.gt_axes, frame=args.shape)
    pred = _named_input("--pred", load_masks, args.pred, var=args.var, axes=args.axes, reference=gt.masks)
    score = match(gt.masks, pred.masks, iou=args.iou, rule=args.rule, centroid_gate=args.centroid_gate)
    combined = neurofinder_combined(gt.masks, pred.masks, threshold_px=args.nf_distance)
    out = {
        "gt": str(gt.path),
        "pred": str(pred.path),
        **score.summary(),
        "neurofinder_combined": combined.combined,
        "neurofinder_distance_px": combined.threshold_px,
        "frame": list(gt.masks.shape),
        "gt_format": gt.format,
        "gt_var": gt.variable,
        "gt_axes": list(gt.axes) if gt.axes else None,
        "pred_format": pred.format,
        "pred_var": pred.variable,
        "pred_axes": list(pred.axes) if pred.axes else None,
        "orientation": pred.note,
    }
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"ground truth  {gt.path}  ({gt.masks.n} masks, {gt.masks.shape[0]}x{gt.masks.shape[1]}, {gt.format})")
    print(f"detections    {pred.path}  ({pred.masks.n} masks, {pred.format}, axes {pred.axes})")
    if pred.note:
        print(f"orientation   {pred.note}")
    print(
        f"matching      IoU >= {args.iou}, rule {args.rule}"
        + (f", centroid gate {args.centroid_gate} px" if args.centroid_gate else "")
    )
    print(f"TP {score.tp}  FP {score.fp}  FN {score.fn}")
    print(f"recall {score.recall:.4f}  precision {score.precision:.4f}  F1 {score.f1:.4f}")
    print(f"Neurofinder combined ({combined.threshold_px:g} px): {combined.combined:.4f}")
    return 0


# ---------------------------------------------------------------------------- methods
def cmd_methods(args: argparse.Namespace) -> int:
    from methods.base import methods

    rows = []
    for name, m in methods().items():
        if isinstance(m, Exception):
            rows.append({"name": name, "available": False, "reason": f"failed to import: {m}", "description": ""})
            continue
        ok, reason = m.is_available()
        rows.append({"name": name, "available": ok, "reason": reason, "description": m.description})
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no method registered yet (methods register through the 'bench.methods' entry-point group)")
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        state = "available" if r["available"] else f"unavailable: {r['reason']}"
        print(f"{r['name']:<{width}}  {state}" + (f"\n{'':<{width}}  {r['description']}" if r["description"] else ""))
    return 0


# ---------------------------------------------------------------------------- datasets
def cmd_datasets(args: argparse.Namespace) -> int:
    action = getattr(args, "action", None)
    if action == "describe":
        return _datasets_describe(args)
    if action == "show":
        return _datasets_show(args)
    if action == "add":
        return _datasets_add(args)
    if action == "remove":
        return _datasets_remove(args)
    return _datasets_list(args)


def _datasets_add(args: argparse.Namespace) -> int:
    from datasets.borders import parse_crop
    from datasets.user import add_recording

    path = add_recording(
        args.name,
        args.movie,
        masks_path=args.masks,
        fps=args.fps,
        um_per_px=args.um_per_px,
        key=args.key,
        recording=args.recording,
        indicator=args.indicator,
        split=args.split,
        group=args.group,
        var=args.var,
        axes=args.axes,
        crop=None if args.crop is None else parse_crop(args.crop),
        overwrite=args.overwrite,
    )
    rec = args.recording or args.name
    print(f"registered '{rec}' in data set '{args.name}' ({path})")
    print(f"run it with: python -m bench run --dataset {args.name}")
    return 0


def _datasets_remove(args: argparse.Namespace) -> int:
    from datasets.user import remove_recording

    path = remove_recording(args.name, recording=args.recording)
    what = f"recording '{args.recording}' of" if args.recording else "the data set"
    print(f"removed {what} '{args.name}' ({path}); the movie and mask files are left as they are")
    return 0


def _parse_base_urls(values: Sequence[str] | None, dataset: str) -> dict[str, str] | None:
    """``--base-url [KEY=]URL`` values as ``{key: url}``; a bare URL is the data set's own source."""
    if not values:
        return None
    out = {}
    for text in values:
        key, sep, url = text.partition("=")
        if not sep or "://" in key:
            key, url = dataset, text
        if "://" not in url:
            raise InputError(f"--base-url {text!r} is not a URL", hint="e.g. --base-url http://127.0.0.1:8000")
        out[key.strip().lower()] = url.strip()
    return out


def cmd_fetch(args: argparse.Namespace) -> int:
    from datasets.fetch import fetch

    report = fetch(
        args.name,
        only=args.only or None,
        base_urls=_parse_base_urls(args.base_url, args.name),
        progress=not args.no_progress,
        markings=not args.no_markings,
    )
    print(report.summary())
    return 0


def _datasets_list(args: argparse.Namespace) -> int:
    from datasets.registry import broken_entry_points, data_root, providers

    root = data_root()
    rows = []
    for name, prov in providers(root).items():
        a = prov.availability(root)
        rows.append(
            {
                "name": name,
                "description": prov.description,
                "available": a.available,
                "reason": a.reason,
                "how_to_get": a.how_to_get,
                "recordings_on_disk": a.recordings_on_disk,
                "recordings_total": a.recordings_total,
            }
        )
    for name, err in broken_entry_points().items():
        rows.append(
            {
                "name": name,
                "description": "",
                "available": False,
                "reason": f"failed to import: {err}",
                "how_to_get": "",
                "recordings_on_disk": 0,
                "recordings_total": 0,
            }
        )
    if args.json:
        print(json.dumps({"data_root": str(root), "datasets": rows}))
        return 0
    print(f"data root: {root}  (set BENCH_DATA to move it)")
    if not rows:
        print("no data set registered yet")
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        disk = f"{r['recordings_on_disk']}/{r['recordings_total']} recordings on disk"
        # An unavailable data set's reason already says what is on disk.
        state = f"available; {disk}" if r["available"] else f"unavailable: {r['reason']}"
        print(f"{r['name']:<{width}}  {state}")
        if r["description"]:
            print(f"{'':<{width}}  {r['description']}")
        if r["how_to_get"]:
            print(f"{'':<{width}}  get it: {r['how_to_get']}")
        inventory = getattr(providers(root).get(r["name"]), "inventory", None)
        if args.recordings and inventory is not None:
            for st in inventory(root):
                size = f"{st.bytes_on_disk / 1e9:.2f} GB" if st.bytes_on_disk else "-"
                state = "on disk" if st.on_disk else "missing: " + ", ".join(st.missing)
                print(f"{'':<{width}}    {st.name:<16} {size:>9}  {state}")
    return 0


def _datasets_describe(args: argparse.Namespace) -> int:
    from datasets.describe import describe_dataset, format_description
    from datasets.registry import get

    dataset = get(args.name)
    ref = Path(args.reference) if args.reference else _default_fixtures()
    desc = describe_dataset(dataset, reference_dir=ref)
    print(json.dumps(desc) if args.json else format_description(desc))
    return 0


def _datasets_show(args: argparse.Namespace) -> int:
    from datasets.registry import get
    from datasets.show import show_recording

    dataset = get(args.name)
    rec = dataset[args.recording] if args.recording else dataset.recordings[0]
    out = Path(args.out or f"{args.name}-{rec.name}.png")
    path = show_recording(rec, out)
    print(f"wrote {path}")
    return 0


def _default_fixtures() -> Path | None:
    """The shared fixtures beside a checkout, when present."""
    here = Path(__file__).resolve().parents[1]
    for cand in (here / "shared" / "fixtures", here.parent / "shared" / "fixtures"):
        if cand.is_dir():
            return cand
    return None


# ---------------------------------------------------------------------------- run
def cmd_run(args: argparse.Namespace) -> int:
    from bench.harness import RunConfig, run_benchmark, select_methods
    from bench.plan import slow_methods
    from bench.report import make_report
    from datasets.registry import get_provider, providers

    if not providers():
        print("no data set registered yet")
        return 0
    get_provider(args.dataset)  # unknown names fail here, with a suggestion
    _check_run_numbers(args)
    if args.methods.strip() != "all" and not [m for m in args.methods.split(",") if m.strip()]:
        raise InputError(f"--methods {args.methods!r} names no method", hint="give names, e.g. --methods stnn,suite2p")
    names = select_methods(args.methods)
    slow = slow_methods() if args.methods.strip() == "all" else ()
    if not names and not slow:
        print("no method is available to run (`python -m bench methods` says why)")
        return 0
    graders = _check_graders(args)
    config = RunConfig(
        dataset=args.dataset,
        methods=names,
        tune=args.tune,
        split=args.split,
        graders=graders,
        rule=args.rule,
        device=args.device,
        max_grid=args.max_grid,
        train=args.train,
        train_schedule=args.train_schedule,
        if_time_allows=slow,
    )
    out = Path(args.out or Path("runs") / args.dataset)
    also = f" (+ {', '.join(slow)} if the time allows)" if slow else ""
    print(f"running {', '.join(names)}{also} on {args.dataset} ({args.split} split, tuning: {args.tune}, "
          f"training: {args.train}) -> {out}")
    table = run_benchmark(
        config,
        out,
        resume=args.resume,
        force=args.force,
        jobs=args.jobs,
        timeout_s=args.timeout,
        memory_mb=args.memory_mb,
        progress=not args.quiet,
        retry_failed=args.retry_failed,
        executor=_executor(args),
    )
    print(f"results: {table}")
    if not args.no_report:
        report = make_report(table, out / "report")
        print(f"report:  {report}")
    return 0


def _check_run_numbers(args: argparse.Namespace) -> None:
    """Refuse counts and limits that would silently mean something else (``--timeout 0`` was 3600 s)."""
    for flag, value in (("--jobs", args.jobs), ("--max-grid", args.max_grid)):
        if value < 1:
            raise InputError(f"{flag} must be at least 1, got {value}")
    _check_positive("--timeout", args.timeout)
    _check_positive("--memory-mb", args.memory_mb)


def _check_graders(args: argparse.Namespace) -> tuple[str, ...] | None:
    """The ``--grader`` names, each checked against the ground truths of the data set's recordings."""
    if args.grader in (None, "all"):
        return None
    from datasets.registry import get

    wanted = tuple(g.strip() for g in args.grader.split(",") if g.strip())
    recordings = get(args.dataset).recordings
    if args.split != "all":
        recordings = [r for r in recordings if r.split == args.split]
    available = sorted({g for r in recordings for g in r.graders})
    unknown = [g for g in wanted if g not in available]
    if unknown or not wanted:
        raise InputError(
            f"--grader {args.grader!r}: no ground truth named {', '.join(unknown) or 'in it'} "
            f"in the {args.split} split of {args.dataset}",
            hint=f"available: {', '.join(available) or 'none'}",
        )
    return wanted


def _executor(args: argparse.Namespace):
    """The executor ``--executor`` asks for (None: the local default with ``--jobs``)."""
    if args.executor == "local":
        if args.scheduler or args.cluster:
            raise InputError("--scheduler and --cluster need --executor dask")
        return None
    from bench.cluster import DaskExecutor

    return DaskExecutor(args.scheduler, cluster=args.cluster, cluster_config=args.cluster_config,
                        connect_timeout_s=args.connect_timeout)


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import make_report

    src = Path(args.results)
    out = Path(args.out) if args.out else (src if src.is_dir() else src.parent) / "report"
    print(f"report: {make_report(src, out, figures=not args.no_figures)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from bench.export import export_run, parse_formats

    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    rep = export_run(args.run, parse_formats(args.format), methods=methods, out=args.out, overwrite=args.overwrite)
    print(f"wrote {len(rep.files)} file(s) under {rep.out}")
    for f in rep.not_exported:
        print(f"not exported: {f.method} on {f.recording} ({f.status}: {f.error})")
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    from bench.setup_caiman import setup_caiman

    result = setup_caiman(prefix=args.prefix, source=args.source, install_deps=not args.no_deps)
    print(result.summary())
    return 0


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark suite for active-neuron segmentation in two-photon calcium imaging.",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser(
        "score",
        help="score saved masks against a ground-truth file",
        description="Score any saved masks against any ground-truth file "
        "(MATLAB v5/v7.3, .npy/.npz, regions.json, Suite2p stat.npy, TIFF/PNG labels, "
        "ImageJ ROI zip). The detections are aligned to the ground truth's frame.",
    )
    s.add_argument("--gt", required=True, type=Path, help="ground-truth mask file")
    s.add_argument("--pred", required=True, type=Path, help="detected mask file")
    s.add_argument(
        "--rule",
        choices=("stnn", "suns"),
        default="stnn",
        help="stnn: containment also matches (the paper's Eq. 14); suns: IoU only (default: stnn)",
    )
    s.add_argument("--iou", type=float, default=0.5, help="minimum IoU of a match (default 0.5)")
    s.add_argument(
        "--centroid-gate",
        type=float,
        default=None,
        metavar="PX",
        help="pairs with centroids farther apart than PX pixels never match (CaImAn-style)",
    )
    s.add_argument(
        "--nf-distance",
        type=float,
        default=5.0,
        metavar="PX",
        help="centre distance for the Neurofinder combined score (default 5 px)",
    )
    s.add_argument("--var", default=None, help="variable/dataset/array to read from the prediction file")
    s.add_argument("--gt-var", default=None, help="variable/dataset/array to read from the ground-truth file")
    s.add_argument(
        "--axes",
        type=_parse_axes,
        default=None,
        help="permutation of the stored prediction array to (N, rows, cols), e.g. 2,0,1",
    )
    s.add_argument("--gt-axes", type=_parse_axes, default=None, help="the same for the ground-truth file")
    s.add_argument(
        "--shape",
        type=_parse_shape,
        default=None,
        metavar="ROWSxCOLS",
        help="frame size, needed when the ground truth stores coordinates (regions.json, stat.npy, ROI)",
    )
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_score)

    m = sub.add_parser("methods", help="list registered methods and whether they can run here")
    m.add_argument("--json", action="store_true", help="print JSON")
    m.set_defaults(func=cmd_methods)

    d = sub.add_parser(
        "datasets",
        help="list data sets; describe, show, add or remove one",
        description="Without an action: every registered data set, what is on disk and how to get the rest.",
    )
    d.add_argument("--json", action="store_true", help="print JSON")
    d.add_argument("--recordings", action="store_true", help="also list every recording, its size and what is missing")
    d.set_defaults(func=cmd_datasets)
    dsub = d.add_subparsers(dest="action", metavar="ACTION")
    dd = dsub.add_parser("describe", help="realism statistics of a data set beside real ground truth")
    dd.add_argument("name", help="data set name")
    dd.add_argument("--reference", default=None, help="folder of real fixtures (default: ../shared/fixtures)")
    dd.add_argument("--json", action="store_true", help="print JSON")
    ds = dsub.add_parser("show", help="figure of one recording: mean and correlation images, traces")
    ds.add_argument("name", help="data set name")
    ds.add_argument("--recording", default=None, help="recording name (default: the first)")
    ds.add_argument("--out", default=None, help="PNG path (default: NAME-RECORDING.png)")
    da = dsub.add_parser(
        "add",
        help="add your own annotated recording to a data set of your own",
        description="Add a recording (a multi-page TIFF, a folder of TIFF frames, HDF5/NWB with --key, or .npy, "
        "with masks in any format 'bench score' reads) to the data set NAME, created when new; add several with "
        "--recording ID. The movie is read once in chunks (NaN/Inf, constant movies and too few frames are refused) "
        "and its registration border is detected, or given with --crop. A small manifest is stored under the data "
        "root; the files stay where they are.",
    )
    da.add_argument("name", help="data set name")
    da.add_argument("--recording", default=None, metavar="ID", help="recording id within the data set (default: NAME)")
    da.add_argument("--movie", required=True, help="movie file or folder of TIFF frames")
    da.add_argument("--masks", default=None, help="ground-truth mask file (of the movie's whole frame)")
    da.add_argument("--fps", type=float, default=None, help="frame rate in Hz (read from NWB when absent)")
    da.add_argument("--um-per-px", type=float, default=None, help="pixel size in micrometres")
    da.add_argument("--key", default=None, help="dataset inside an HDF5/NWB file")
    da.add_argument("--var", default=None, help="variable to read from the mask file")
    da.add_argument("--axes", type=_parse_axes, default=None, help="permutation of the stored mask array, e.g. 2,0,1")
    da.add_argument("--indicator", default=None, help="calcium indicator, e.g. GCaMP6f")
    da.add_argument("--split", choices=("train", "test"), default="test", help="split (default: test)")
    da.add_argument("--group", default=None, help="recordings of one group (field of view, animal) are left out "
                    "together in leave-one-out folds (default: the recording id)")
    da.add_argument("--crop", default=None, metavar="T,B,L,R",
                    help="pixels cut from the top, bottom, left and right (default: the detected registration border; "
                    "0,0,0,0 for none)")
    da.add_argument("--overwrite", action="store_true", help="replace a recording of the same id")
    dr = dsub.add_parser("remove", help="remove a user data set or one of its recordings (files are kept)")
    dr.add_argument("name", help="data set name")
    dr.add_argument("--recording", default=None, metavar="ID", help="remove only this recording")

    f = sub.add_parser(
        "fetch",
        help="download a public data set (neurofinder, abo) into the data root",
        description="Download a data set's public files into the data root ($BENCH_DATA): resumes partial "
        "downloads, checks sizes and SHA-256, and without network prints what to download by hand. "
        "Sources can be redirected (mirrors, tests) with --base-url or $BENCH_URL_NEUROFINDER, "
        "$BENCH_URL_ABO, $BENCH_URL_STNEURONET.",
    )
    f.add_argument("name", help="data set name (neurofinder, abo)")
    f.add_argument("--only", nargs="+", default=None, metavar="ID",
                   help="recording ids (01.00 01.00.test; an ABO experiment id, 275 or 175), or 'markings' "
                   "for the ground-truth files alone")
    f.add_argument("--base-url", action="append", default=None, metavar="[KEY=]URL",
                   help="base URL of a source (KEY: neurofinder, abo or stneuronet; default: the data set's own); "
                   "repeatable")
    f.add_argument("--no-markings", action="store_true",
                   help="movies only, not the STNeuroNet authors' marking files (e.g. from a mirror of the movies)")
    f.add_argument("--no-progress", action="store_true", help="no progress bars")
    f.set_defaults(func=cmd_fetch)

    r = sub.add_parser(
        "run",
        help="run methods on a data set, score them and write a report (the main job)",
        description="Run every (method x recording [x parameter point]) in isolated worker processes, "
        "score against every ground truth, append rows to OUT/results.csv and write "
        "OUT/report. A killed run started again skips finished units.",
    )
    r.add_argument("--dataset", default="synthetic", help="data set name (default: synthetic)")
    r.add_argument("--methods", default="all", help="comma-separated method names, or 'all' available (default)")
    r.add_argument(
        "--tune",
        choices=("none", "loo"),
        default="loo",
        help="leave-one-out tuning on each method's grid (default) or default parameters",
    )
    r.add_argument(
        "--split",
        choices=("all", "train", "test"),
        default="test",
        help="recordings evaluated and tuned on (default: test)",
    )
    r.add_argument("--grader", default=None, help="ground truth(s) to score, comma-separated, or 'all' (default)")
    r.add_argument("--rule", choices=("stnn", "suns"), default="stnn", help="matching rule (default: stnn)")
    r.add_argument("--out", default=None, help="output folder (default: runs/DATASET)")
    r.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="device for methods that take one, and for training (default: each method's own)")
    r.add_argument(
        "--train",
        choices=("auto", "shipped", "split", "loo"),
        default="auto",
        help="weights of learning methods (stnn, unet2ds): shipped, trained on the data set's training split, "
        "or one model per held-out recording; auto (default): shipped when trained on this data set, else split",
    )
    r.add_argument(
        "--train-schedule",
        default=None,
        metavar="paper|quick|FILE",
        help="training schedule: the authors' (paper), a CPU-feasible one (quick), or a TOML/JSON file with one "
        "table of settings per method (default: paper with --device cuda, else quick)",
    )
    r.add_argument("--jobs", type=int, default=1, help="method runs at once, each in its own process (default 1)")
    r.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="local worker processes (default) or a Dask cluster (pip install -e '.[cluster]')")
    r.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="address of an existing dask.distributed scheduler, e.g. tcp://10.0.0.5:8786")
    r.add_argument("--cluster", choices=("slurm", "pbs", "sge", "lsf"), default=None,
                   help="start a dask-jobqueue cluster of this kind (with --cluster-config)")
    r.add_argument("--cluster-config", default=None, metavar="FILE",
                   help="TOML file of the cluster's job settings (cores, memory, queue, walltime, n_workers ...)")
    r.add_argument("--connect-timeout", type=float, default=30.0, metavar="S",
                   help="seconds to wait for the Dask scheduler (default 30)")
    r.add_argument("--max-grid", type=int, default=12, help="at most this many parameter points per method")
    r.add_argument("--timeout", type=float, default=None, help="seconds per method run (default: the method's)")
    r.add_argument("--memory-mb", type=float, default=None, help="memory limit per method run")
    r.add_argument("--resume", action="store_true", help="add to an output folder holding a different run")
    r.add_argument("--force", action="store_true", help="start afresh, deleting what the output folder holds")
    r.add_argument("--retry-failed", action="store_true", help="run again units that failed in an earlier attempt")
    r.add_argument("--no-report", action="store_true", help="do not write the report")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_run)

    rp = sub.add_parser(
        "report",
        help="regenerate tables and figures from a results table",
        description="Write report.md, report.html, summary.csv and figures (PNG, SVG) from a "
        "results table; a pure function of the table.",
    )
    rp.add_argument("results", help="results.csv or the run folder holding it")
    rp.add_argument("--out", default=None, help="report folder (default: RUN/report)")
    rp.add_argument("--no-figures", action="store_true", help="tables only")
    rp.set_defaults(func=cmd_report)

    ex = sub.add_parser(
        "export",
        help="write a run's masks as NWB, ImageJ ROI sets, Suite2p stat.npy or .npz",
        description="Export the masks each (method, recording) of a run was scored with: NWB (with the ground "
        "truths, imaging metadata and the movie linked, not copied), ImageJ RoiSet.zip, Suite2p-style stat.npy, "
        "or the suite's sparse .npz. Failed units are listed, not exported.",
    )
    ex.add_argument("run", help="run folder (the --out of 'bench run')")
    ex.add_argument("--format", default="nwb", help="nwb, roi, suite2p, npz, several comma-separated, or all "
                                                     "(default: nwb)")
    ex.add_argument("--methods", default=None, help="comma-separated method labels (default: all of the run's)")
    ex.add_argument("--out", default=None, help="output folder (default: RUN/export)")
    ex.add_argument("--overwrite", action="store_true", help="replace existing files")
    ex.set_defaults(func=cmd_export)

    su = sub.add_parser("setup", help="build a peer method's own environment (caiman)",
                        description="Build CaImAn's own virtual environment from its source tree and point "
                                    "caiman-batch and caiman-online at its interpreter in the suite's config.")
    su.add_argument("what", choices=("caiman",), help="what to set up")
    su.add_argument("--prefix", default=None, help="environment folder (default: ~/.local/share/bench/caiman)")
    su.add_argument("--source", default=None, help="CaImAn source tree or .tar.gz/.zip archive "
                                                   "(default: download the known-good release)")
    su.add_argument("--no-deps", action="store_true", help="install CaImAn alone, not its dependencies "
                                                           "(for an environment prepared by hand, and tests)")
    su.set_defaults(func=cmd_setup)
    return p


@contextlib.contextmanager
def _private_matplotlib_config() -> Iterator[None]:
    """Point matplotlib's config and font cache at a temporary folder, removed afterwards.

    matplotlib (imported by the report figures and ``datasets show``; method
    workers get their own folder) otherwise writes its font cache under
    HOME. A folder the user chose with ``MPLCONFIGDIR`` is left alone.
    """
    if os.environ.get("MPLCONFIGDIR"):
        yield
        return
    folder = tempfile.mkdtemp(prefix="bench-mpl-")
    os.environ["MPLCONFIGDIR"] = folder
    try:
        yield
    finally:
        os.environ.pop("MPLCONFIGDIR", None)
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    # SIGTERM unwinds like Ctrl-C, so that worker processes are killed and files closed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        with _private_matplotlib_config():
            return args.func(args)
    except InputError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
