"""Command line of STNeuroNet: ``python -m stnn {train, segment, tune, perf, stream}``.

Errors a person can fix (:class:`datasets.errors.InputError`) print one line
on stderr and exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from datasets.errors import InputError, naming

__all__ = ["main", "build_parser", "open_movie"]

logger = logging.getLogger("stnn")

MOVIE_SUFFIXES = (".h5", ".hdf5", ".tif", ".tiff", ".npy")


def open_movie(path: str | Path, key: str = "data"):
    """Open a ``.h5``/``.hdf5`` (dataset ``key``), ``.tif``/``.tiff`` or ``.npy`` movie lazily."""
    from datasets.movies import HDF5Movie, NpyMovie, TiffMovie

    p = Path(path)
    suffix = p.suffix.lower()
    if p.is_dir():
        raise InputError("is a folder, expected a movie file", path=p, hint=f"use one of {', '.join(MOVIE_SUFFIXES)}")
    if suffix in (".h5", ".hdf5"):
        return HDF5Movie(p, key=key)
    if suffix in (".tif", ".tiff"):
        return TiffMovie(p)
    if suffix == ".npy":
        return NpyMovie(p)
    raise InputError(f"unknown movie format '{suffix}'", path=p, hint=f"use one of {', '.join(MOVIE_SUFFIXES)}")


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def _pair(text: str) -> tuple[int, int]:
    parts = text.lower().replace("x", ",").split(",")
    try:
        values = tuple(int(p) for p in parts if p)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ROWS,COLS or one size, got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected ROWS,COLS or one size, got {text!r}")
    return values  # type: ignore[return-value]


def _add_precision(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="network precision: auto = bf16 where the CPU/GPU runs it natively, else fp32; "
        "bf16 without native support warns and uses fp32 (default auto)",
    )


def _tile(text: str):
    from .tiling import parse_tile

    try:
        return parse_tile(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _tile_margin(text: str):
    from .tiling import parse_margin

    try:
        return parse_margin(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_MARGIN_HELP = (
    "overlap of tiles on each side: 'auto' (default: the smallest that keeps a probe's probabilities within "
    "1e-4 of exact, measured on the movie), 'exact' (the receptive field, 168 px) or a size in px"
)

_TILE_HELP = (
    "spatial tile side in px, margins included: 'auto' (default: the largest that fits in half the free "
    "memory; a frame that fits runs whole), a size, or 'off'"
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and documentation)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    common.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")

    parser = argparse.ArgumentParser(
        prog="python -m stnn",
        description="STNeuroNet (Soltanian-Zadeh et al., PNAS 2019): segment active neurons in two-photon movies.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "train",
        parents=[common],
        help="train a network on a registered data set",
        description="Train STNeuroNet on the training split of a data set (datasets.registry). "
        "Writes cache/, checkpoints/, weights.pt, weights.json and history.json into --out.",
    )
    p.add_argument("--dataset", required=True, help="registered data set name (e.g. synthetic)")
    p.add_argument("--out", default=None, help="run folder (default: runs/stnn-<dataset>)")
    p.add_argument("--iterations", type=int, default=36_000, help="total iterations (default 36000)")
    p.add_argument("--batch", type=int, default=3, help="crops per iteration (default 3)")
    p.add_argument("--crop", type=_pair, default=(144, 144), help="crop size ROWS,COLS (default 144)")
    p.add_argument("--frames", type=int, default=120, help="binned frames per crop (default 120)")
    p.add_argument("--lr", type=_positive(float), default=5e-4, help="Adam learning rate (default 5e-4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--logit-leak",
        type=float,
        default=0.01,
        help="negative slope of the final activation in training only (0: the authors' ReLU; default 0.01)",
    )
    p.add_argument("--checkpoint-every", type=int, default=1000, help="iterations between checkpoints")
    p.add_argument("--validate-every", type=int, default=1000, help="iterations between validation F1 (0: never)")
    p.add_argument(
        "--validate-on",
        choices=("test", "none"),
        default="test",
        help="held-out recordings for validation F1 (monitoring only; default: the test split)",
    )
    p.add_argument("--grader", default=None, help="ground truth to train on (default: the data set's)")
    p.add_argument(
        "--target-fps",
        type=_positive(float),
        default=6.0,
        help="binned frame rate (paper: 6 Hz ABO, 3 Hz Neurofinder; default 6)",
    )
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument(
        "--init",
        default=None,
        help="start from these weights (shipped name or .pt) instead of a random initialisation: fine-tuning",
    )
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--no-amp", action="store_true", help="float32 only (as --precision fp32)")
    _add_precision(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser(
        "segment",
        parents=[common],
        help="segment a movie file into masks",
        description="Segment the active neurons of a movie (.h5/.hdf5, .tif/.tiff or .npy, (T, H, W)) and save the "
        "masks as .npz (datasets.masks.Masks).",
    )
    p.add_argument("movie", help="movie file")
    p.add_argument("--out", required=True, help="output masks file (.npz, or .nwb: NWB with the movie linked)")
    p.add_argument("--fps", type=_positive(float), required=True, help="frame rate of the movie (Hz)")
    p.add_argument("--um-per-px", type=_positive(float), required=True, help="pixel size (um)")
    p.add_argument("--weights", default="synthetic", help="shipped weights name or .pt path (default: synthetic)")
    p.add_argument("--key", default="data", help="HDF5 dataset holding the movie (default: data)")
    p.add_argument("--threshold", type=float, default=None, help="probability threshold (default: the weights')")
    p.add_argument("--min-area", type=float, default=None, help="minimum area in px (default: the weights')")
    p.add_argument("--overlap", choices=("mean", "median"), default=None, help="overlapping windows, maps combined")
    p.add_argument("--windows-per-batch", type=int, default=2, help="windows per forward pass (default 2)")
    p.add_argument(
        "--batch-frames",
        type=int,
        default=None,
        help="binned frames per window (default: the weights' training window, else 120)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--save-maps", default=None, help="also save the probability maps (.npy)")
    _add_precision(p)
    p.add_argument("--tile", type=_tile, default="auto", metavar="PX", help=_TILE_HELP)
    p.add_argument("--tile-margin", type=_tile_margin, default="auto", metavar="PX", help=_MARGIN_HELP)
    p.add_argument("--json", action="store_true", help="print timings as JSON")

    p = sub.add_parser(
        "tune",
        parents=[common],
        help="tune threshold and minimum area on a data set",
        description="Choose the post-processing threshold and minimum area that maximise the mean F1 over the "
        "recordings of a data set split (the paper's procedure), optionally writing them into the weights' metadata.",
    )
    p.add_argument("--dataset", required=True, help="registered data set name")
    p.add_argument("--weights", required=True, help="shipped weights name or .pt path")
    p.add_argument("--split", choices=("train", "test", "all"), default="train", help="recordings used (default train)")
    p.add_argument("--grader", default=None, help="ground truth (default: the data set's)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N")
    p.add_argument("--write", action="store_true", help="store the result in the weights' .json")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = sub.add_parser(
        "perf",
        parents=[common],
        help="measure inference or training speed",
        description="Binned frames per second of the network alone and of the whole pipeline (pre-processing, "
        "network, post-processing) on a random movie, excluding file reading, and peak memory; with --train, "
        "seconds per training iteration in fp32 and in --precision.",
    )
    p.add_argument("--size", type=int, default=488, help="frame side in px (default 488)")
    p.add_argument(
        "--frames", type=int, default=None, help="binned frames (default 1200; with --train: per crop, default 120)"
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--windows-per-batch", type=int, default=1, help="windows per forward pass (default 1)")
    p.add_argument("--no-amp", action="store_true", help="float32 only (as --precision fp32)")
    _add_precision(p)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--train", action="store_true", help="time training iterations instead of inference")
    p.add_argument("--crop", type=_pair, default=(64, 64), help="with --train: crop ROWS,COLS (default 64)")
    p.add_argument("--batch", type=int, default=3, help="with --train: crops per iteration (default 3)")
    p.add_argument("--iterations", type=int, default=3, help="with --train: timed iterations per round (default 3)")
    p.add_argument("--rounds", type=int, default=2, help="with --train: alternating rounds, fastest kept (default 2)")
    p.add_argument("--channels-last", action="store_true", help="with --train: channels-last 3-D convolution weights")
    p.add_argument("--tile", type=_tile, default="auto", metavar="PX", help=_TILE_HELP)
    p.add_argument("--tile-margin", type=_tile_margin, default="auto", metavar="PX", help=_MARGIN_HELP)
    p.add_argument(
        "--weights",
        default=None,
        help="shipped weights name or .pt path (default: a random network, same cost; a measured tile margin "
        "needs trained weights)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")

    from .stream_cli import add_parser as add_stream_parser

    add_stream_parser(sub, common, _positive)
    return parser


def _cmd_train(args: argparse.Namespace) -> int:
    from datasets import registry

    from .train import train

    data = registry.get(args.dataset)
    out = Path(args.out) if args.out else Path("runs") / f"stnn-{args.dataset}"
    result = train(
        data,
        out,
        device=args.device,
        resume=args.resume,
        init=args.init,
        validate_on=None if args.validate_on == "none" else args.validate_on,
        progress=not args.no_progress,
        command="python -m stnn " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        iterations=args.iterations,
        batch=args.batch,
        crop=tuple(args.crop),
        frames=args.frames,
        lr=args.lr,
        seed=args.seed,
        logit_leak=args.logit_leak,
        checkpoint_every=args.checkpoint_every,
        validate_every=args.validate_every,
        grader=args.grader,
        target_fps=args.target_fps,
        amp=False if args.no_amp else None,
        precision=args.precision,
    )
    m = result.metadata
    f1 = "n/a" if m.validation_f1 is None else f"{m.validation_f1:.3f}"
    print(f"weights: {result.weights_path}")
    print(
        f"iterations {m.iterations}, {m.wall_time_s:.0f} s; tuned threshold {m.threshold}, min area {m.min_area} px; "
        f"validation F1 {f1}"
    )
    return 0


def _save_nwb(args: argparse.Namespace, movie, masks) -> Path:
    """The masks as NWB, the movie linked, the command's settings in the segmentation's description."""
    from datasets.nwbio import write_masks_nwb
    from datasets.records import Recording

    rec = Recording(Path(args.movie).stem, movie, args.fps, args.um_per_px)
    import torch

    settings = {k: getattr(args, k) for k in ("weights", "threshold", "min_area", "overlap", "batch_frames")}
    about = {"method": "stnn", "params": settings, "versions": {"torch": torch.__version__}}
    return write_masks_nwb(args.out, masks, rec, method="stnn", description=about)


def _cmd_segment(args: argparse.Namespace) -> int:
    from .infer import segment

    for flag, value in (("--out", args.out), ("--save-maps", args.save_maps)):
        if value:
            _output_file(flag, Path(value))
    try:
        movie = open_movie(args.movie, key=args.key)
    except InputError as exc:
        raise naming(exc, "", args.movie) from exc
    res = segment(
        movie,
        args.weights,
        fps=args.fps,
        um_per_px=args.um_per_px,
        device=args.device,
        threshold=args.threshold,
        min_area=args.min_area,
        overlap=args.overlap,
        windows_per_batch=args.windows_per_batch,
        batch_frames=args.batch_frames,
        precision=args.precision,
        tile=args.tile,
        tile_margin=args.tile_margin,
    )
    if Path(args.out).suffix.lower() == ".nwb":
        path = _save_nwb(args, movie, res.masks)
    else:
        path = res.masks.save(args.out)
    if args.save_maps:
        import numpy as np

        np.save(args.save_maps, res.prob_maps)
    t = res.timings
    if args.json:
        print(json.dumps({"masks": str(path), "n_masks": res.masks.n, **t.as_dict()}))
    else:
        print(f"{res.masks.n} masks -> {path}")
        print(
            f"{t.n_frames} binned frames, {t.n_maps} maps: {t.fps:.1f} frames/s (network {t.network_fps:.1f}); "
            f"init {t.init_s:.2f} s"
        )
        if t.tile:
            print(f"tiles: {t.n_tiles} of {t.tile} px, margin {t.tile_margin} px ({t.tile_source})")
            print(f"tile margin: {t.tile_margin_source}")
    return 0


def _output_file(flag: str, path: Path) -> None:
    """Create the parent folders of an output file before the work, or say why that is impossible."""
    if path.is_dir():
        raise InputError(f"{flag} names a folder, expected a file name", path=path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{flag}: cannot create the folder {path.parent} ({exc.strerror or exc})", path=path) from exc


def _cmd_tune(args: argparse.Namespace) -> int:
    from datasets import registry

    from .infer import default_preprocess_config, prepare_movie, probability_maps
    from .tune import tune
    from .weights import WeightsMetadata, pretrained, resolve

    data = registry.get(args.dataset)
    recs = list(data.recordings) if args.split == "all" else list(data.split(args.split))
    if not recs:
        raise InputError(f"data set {data.name} has no '{args.split}' recordings")
    grader = args.grader or data.default_grader
    model, meta = pretrained(args.weights, device=args.device or "cpu", return_metadata=True)
    maps, gts = {}, {}
    for rec in recs:
        with tempfile.TemporaryDirectory(prefix="stnn-tune-") as tmp:
            prep = prepare_movie(rec.movie, default_preprocess_config(rec.fps, rec.um_per_px), tmp, device=args.device)
            maps[rec.name] = probability_maps(prep, model, device=args.device)
        gts[rec.name] = rec.ground_truth(grader)
    um = recs[0].um_per_px
    best = tune(maps, gts, um_per_px=um)
    if args.json:
        print(json.dumps({"threshold": best.threshold, "min_area": best.min_area, "f1": best.f1, "um_per_px": um}))
    else:
        print(
            f"threshold {best.threshold:.2f}, min area {best.min_area:.1f} px at {um} um/px: mean F1 {best.f1:.3f} "
            f"over {len(recs)} recordings"
        )
    if args.write:
        path = resolve(args.weights).with_suffix(".json")
        meta = WeightsMetadata.from_dict({**json.loads(path.read_text())} if path.is_file() else {})
        meta.threshold, meta.min_area, meta.um_per_px = best.threshold, best.min_area, um
        meta.extra["tuned_on"] = {"dataset": data.name, "split": args.split, "f1": best.f1}
        path.write_text(meta.to_json())
        print(f"written to {path}")
    return 0


def _cmd_perf(args: argparse.Namespace) -> int:
    import torch

    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.train:
        from .train_perf import perf_train

        precisions = ("fp32",) if args.no_amp or args.precision == "fp32" else ("fp32", args.precision)
        res = perf_train(
            tuple(args.crop),
            args.frames or 120,
            args.batch,
            args.device,
            precisions=precisions,
            iterations=args.iterations,
            rounds=args.rounds,
            channels_last=args.channels_last,
        )
        print(json.dumps(res.as_dict(), indent=2) if args.json else res.summary())
        return 0
    from .perf import perf

    frames = 1200 if args.frames is None else args.frames
    if args.size < 8 or frames < 1:
        raise InputError(f"--size must be >= 8 and --frames >= 1, got {args.size}, {frames}")
    res = perf(
        args.size,
        frames,
        args.device,
        windows_per_batch=args.windows_per_batch,
        amp=False if args.no_amp else None,
        precision=args.precision,
        tile=args.tile,
        tile_margin=args.tile_margin,
        weights=args.weights,
    )
    print(json.dumps(res.as_dict(), indent=2) if args.json else res.summary())
    return 0


def _cmd_stream(args: argparse.Namespace) -> int:
    from .stream_cli import cmd_stream

    return cmd_stream(args)


_COMMANDS = {"train": _cmd_train, "segment": _cmd_segment, "tune": _cmd_tune, "perf": _cmd_perf, "stream": _cmd_stream}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _COMMANDS[args.command](args)
    except InputError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
