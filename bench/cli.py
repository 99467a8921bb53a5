"""The ``python -m bench`` command line.

Output here is for people (and ``--json`` for programs); library code logs.
Errors a user can fix (:class:`datasets.errors.InputError`) print one line
naming the input and exit with code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from datasets.errors import InputError

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


# ---------------------------------------------------------------------------- score
def cmd_score(args: argparse.Namespace) -> int:
    from bench.metrics import match, neurofinder_combined
    from datasets.maskio import load_masks

    gt = load_masks(args.gt, var=args.gt_var, axes=args.gt_axes, frame=args.shape)
    pred = load_masks(args.pred, var=args.var, axes=args.axes, reference=gt.masks)
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
    from datasets.user import add_recording

    path = add_recording(args.name, args.movie, masks_path=args.masks, fps=args.fps, um_per_px=args.um_per_px,
                         key=args.key, indicator=args.indicator, split=args.split, var=args.var,
                         overwrite=args.overwrite)
    print(f"registered '{args.name}' ({path}); run it with: python -m bench run --dataset {args.name}")
    return 0


def _datasets_remove(args: argparse.Namespace) -> int:
    from datasets.user import remove_recording

    path = remove_recording(args.name)
    print(f"removed the registration {path} (the movie and mask files are left as they are)")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from datasets.fetch import fetch

    report = fetch(args.name, only=args.only or None, progress=not args.no_progress)
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
    from bench.report import make_report
    from datasets.registry import get_provider, providers

    if not providers():
        print("no data set registered yet")
        return 0
    get_provider(args.dataset)  # unknown names fail here, with a suggestion
    names = select_methods(args.methods)
    if not names:
        print("no method is available to run (python -m bench methods says why)")
        return 0
    graders = None if args.grader in (None, "all") else tuple(args.grader.split(","))
    config = RunConfig(
        dataset=args.dataset,
        methods=names,
        tune=args.tune,
        split=args.split,
        graders=graders,
        rule=args.rule,
        device=args.device,
        max_grid=args.max_grid,
    )
    out = Path(args.out or Path("runs") / args.dataset)
    print(f"running {', '.join(names)} on {args.dataset} ({args.split} split, tuning: {args.tune}) -> {out}")
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
    )
    print(f"results: {table}")
    if not args.no_report:
        report = make_report(table, out / "report")
        print(f"report:  {report}")
    return 0


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
        help="list data sets; describe or show one",
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
    da = dsub.add_parser("add", help="register your own recording (movie and optional masks) as a data set",
                         description="Register a recording from a multi-page TIFF, a folder of TIFF frames, "
                                     "HDF5/NWB (with --key) or .npy, with masks in any format 'bench score' reads. "
                                     "A small manifest is stored under the data root; the files stay where they are.")
    da.add_argument("name", help="data set name for the recording")
    da.add_argument("--movie", required=True, help="movie file or folder of TIFF frames")
    da.add_argument("--masks", default=None, help="ground-truth mask file")
    da.add_argument("--fps", type=float, default=None, help="frame rate in Hz (read from NWB when absent)")
    da.add_argument("--um-per-px", type=float, default=None, help="pixel size in micrometres")
    da.add_argument("--key", default=None, help="dataset inside an HDF5/NWB file")
    da.add_argument("--var", default=None, help="variable to read from the mask file")
    da.add_argument("--indicator", default=None, help="calcium indicator, e.g. GCaMP6f")
    da.add_argument("--split", choices=("train", "test"), default="test", help="split (default: test)")
    da.add_argument("--overwrite", action="store_true", help="replace an existing registration")
    dr = dsub.add_parser("remove", help="remove a registered recording (its files are kept)")
    dr.add_argument("name", help="registered name")

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
    r.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device for methods that take one")
    r.add_argument("--jobs", type=int, default=1, help="method runs at once, each in its own process (default 1)")
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
