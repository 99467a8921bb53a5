"""Planning a run: what to compute (units and their dependencies), validated before anything runs.

:func:`plan_run` turns a :class:`RunConfig` and a data set into
:class:`~bench.units.TrainUnit`, :class:`~bench.units.StageUnit` and
:class:`~bench.units.SegmentUnit` records. Every parameter point is checked
against its method's declared parameters here, so a bad value is refused
with the method, the parameter and the allowed values before a worker
starts.

Training (methods that learn): ``train`` is one of

- ``shipped``: the weights shipped with the method;
- ``split``: trained once on the data set's training recordings, used on
  every evaluated recording;
- ``loo``: one model per evaluated recording, trained on the others (its
  group-mates left out, as :meth:`datasets.records.Dataset.folds` does);
- ``auto`` (default): ``shipped`` when the shipped weights were trained on
  this data set, else ``split`` when the data set has training recordings
  with ground truth, else ``shipped`` with a warning and a note in the report.

Units with weights trained in the run use the threshold and minimum area
tuned with those weights on their training recordings (the paper's
procedure), so they have one parameter point and no grid.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.budget import admit
from bench.units import SegmentUnit, StageUnit, TrainUnit, params_hash, recording_fingerprint
from datasets.errors import InputError
from datasets.records import Dataset, Recording
from methods.base import Method, get_method, methods
from methods.params import expensive_part

__all__ = ["RunConfig", "Plan", "plan_run", "split_label", "select_methods", "slow_methods", "load_schedule",
           "TRAIN_MODES"]

log = logging.getLogger(__name__)

TRAIN_MODES = ("auto", "shipped", "split", "loo")


@dataclass(frozen=True)
class RunConfig:
    """What a run computes; two runs with equal configs may share an output folder.

    Attributes
    ----------
    dataset : str
        Registered data set name.
    methods : tuple of str
        Method references (``"suite2p"``, ``"files:PATTERN"``), optionally labelled (``"ST=files:..."``).
    tune : {"none", "loo"}
        Default parameters, or leave-one-out tuning on each method's grid.
    split : {"all", "train", "test"}
        Recordings evaluated (and tuned on, for ``loo``).
    graders : tuple of str or None
        Ground truths scored; None: every grader of each recording.
    rule : {"stnn", "suns"}
        Matching rule of the scorer.
    device : str or None
        Passed to methods that declare a ``device`` parameter; None: each method's default.
    max_grid : int
        Cap on parameter points per method (the first points of the grid).
    train : {"auto", "shipped", "split", "loo"}
        Where learning methods' weights come from (module docstring).
    train_schedule : str or None
        ``paper``, ``quick`` or a TOML/JSON file of training settings per
        method; None: ``paper`` on CUDA, else ``quick``.
    if_time_allows : tuple of str
        Slow methods that ``--methods all`` adds only when their estimated
        time fits the run's budget (:func:`bench.budget.admit`).
    """

    dataset: str
    methods: tuple[str, ...]
    tune: str = "loo"
    split: str = "test"
    graders: tuple[str, ...] | None = None
    rule: str = "stnn"
    device: str | None = None
    max_grid: int = 12
    train: str = "auto"
    train_schedule: str | None = None
    if_time_allows: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.tune not in ("none", "loo"):
            raise InputError(f"--tune must be 'none' or 'loo', got {self.tune!r}")
        if self.split not in ("all", "train", "test"):
            raise InputError(f"--split must be all, train or test, got {self.split!r}")
        if self.rule not in ("stnn", "suns"):
            raise InputError(f"--rule must be stnn or suns, got {self.rule!r}")
        if self.max_grid < 1:
            raise InputError(f"--max-grid must be >= 1, got {self.max_grid}")
        if self.train not in TRAIN_MODES:
            raise InputError(f"--train must be one of {', '.join(TRAIN_MODES)}, got {self.train!r}")
        if self.device not in (None, "cpu", "cuda"):
            raise InputError(f"--device must be cpu or cuda, got {self.device!r}")

    @property
    def schedule(self) -> str:
        """The training schedule actually used."""
        if self.train_schedule:
            return self.train_schedule
        return "paper" if self.device == "cuda" else "quick"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["methods"] = list(d["methods"])
        d["if_time_allows"] = list(d["if_time_allows"])
        d["graders"] = list(d["graders"]) if d["graders"] is not None else None
        return d


def split_label(entry: str) -> tuple[str, str]:
    """``'LABEL=REF'`` -> (LABEL, REF); a bare reference is its own label."""
    label, sep, ref = entry.partition("=")
    return (label.strip(), ref.strip()) if sep else (entry.strip(), entry.strip())


def select_methods(spec: str) -> tuple[str, ...]:
    """Method entries from ``'a,b'`` or ``'all'`` (every available method that needs no argument).

    An entry may carry a label for the tables: ``'ST=files:out/ST_{recording}.mat'``.
    """
    if spec.strip() == "all":
        return _available_for_all(slow=False)  # slow_methods() may add the others, by the run's time budget
    names = tuple(s.strip() for s in spec.split(",") if s.strip())
    if not names:
        raise InputError(f"--methods {spec!r} names no method", hint="e.g. --methods stnn,suite2p, or 'all'")
    labels = [split_label(n)[0] for n in names]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise InputError(f"method label(s) {', '.join(dupes)} given twice")
    for n in names:
        get_method(split_label(n)[1])  # unknown names fail early, with a suggestion
    return names


def slow_methods() -> tuple[str, ...]:
    """Available methods that ``--methods all`` adds only when the run's time allows (:func:`bench.budget.admit`)."""
    return _available_for_all(slow=True)


def _available_for_all(slow: bool) -> tuple[str, ...]:
    """Available methods that need no argument, in the default run (``slow=False``) or out of it."""
    chosen = []
    for name, m in methods().items():
        if isinstance(m, Exception) or m.needs_argument or m.in_default_run == slow:
            continue
        if slow and type(m).estimate_s is Method.estimate_s:
            continue  # left out for another reason than time (e.g. stnn-online repeats stnn's network): named only
        ok, reason = m.is_available()
        if ok:
            chosen.append(name)
        else:
            log.info("skipping method %s: %s", name, reason)
    return tuple(chosen)


# ---------------------------------------------------------------------------- schedules
def load_schedule(spec: str, method: Method) -> dict[str, Any]:
    """The validated training settings of ``method`` for a schedule name or file.

    A schedule file (TOML or JSON) holds one table per method
    (``[stnn]``, ``[unet2ds]``) of that method's training settings.
    """
    if spec in method.train_schedules:
        return method.check_train_settings(method.train_schedules[spec])
    path = Path(spec)
    if not path.is_file():
        names = sorted(method.train_schedules)
        raise InputError(
            f"--train-schedule {spec!r} is neither a schedule of method '{method.name}' nor a file",
            hint=f"use one of {', '.join(names)} or a TOML/JSON file",
        )
    tables = _read_schedule_file(path)
    learners = {n for n, m in methods().items() if not isinstance(m, Exception) and m.learns}
    unknown = sorted(set(tables) - learners)
    if unknown:
        raise InputError(
            f"schedule file has table(s) {', '.join(map(repr, unknown))} that are no learning method",
            path=path,
            hint=f"learning methods: {', '.join(sorted(learners))}",
        )
    if method.name not in tables:
        raise InputError(f"schedule file has no [{method.name}] table", path=path)
    try:
        return method.check_train_settings(tables[method.name])
    except InputError as exc:
        raise InputError(str(exc), path=path) from None


def _read_schedule_file(path: Path) -> dict[str, dict]:
    text = path.read_text(errors="replace")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text)
    except ValueError as exc:
        raise InputError(f"unreadable schedule file ({exc})", path=path) from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise InputError("a schedule file holds one table of settings per method, e.g. [stnn]", path=path)
    return data


# ---------------------------------------------------------------------------- plan
@dataclass
class Plan:
    """Units of a run, with what could not be planned."""

    trains: list[TrainUnit] = field(default_factory=list)
    stages: list[StageUnit] = field(default_factory=list)
    units: list[SegmentUnit] = field(default_factory=list)
    #: method label -> why it does not run (unavailable).
    failures: dict[str, str] = field(default_factory=dict)
    #: method label -> training mode used ("shipped", "split", "loo"), for learning methods.
    train_modes: dict[str, str] = field(default_factory=dict)
    #: Sentences for the report (e.g. shipped weights from another data set).
    notes: list[str] = field(default_factory=list)
    adapters: dict[str, Method] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)


def _points(method: Method, rec: Recording, tune: str, max_grid: int) -> list[dict]:
    if tune == "none":
        return [{}]
    grid = method.param_grid(rec)
    if not grid:
        return [{}]
    keys = sorted(grid)
    pts = [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]
    return pts[:max_grid]


def _train_mode(method: Method, config: RunConfig, ds: Dataset, label: str, plan: Plan) -> str:
    if config.train != "auto":
        return config.train
    if method.shipped_dataset == ds.name:
        return "shipped"
    if any(r.graders for r in ds.split("train")):
        return "split"
    note = (
        f"{label}: shipped weights (trained on '{method.shipped_dataset}') were used on '{ds.name}', "
        f"which has no training recordings with ground truth to train on"
    )
    log.warning(note)
    plan.notes.append(note)
    return "shipped"


def _train_units(
    label: str, ref: str, method: Method, mode: str, config: RunConfig, ds: Dataset, recs: list[Recording], cache
) -> dict[str, TrainUnit]:
    """Training units by evaluated recording name."""
    settings = load_schedule(config.schedule, method)
    device = config.device or "cpu"

    def unit(fold: str, train: tuple[Recording, ...]) -> TrainUnit:
        if not train:
            raise InputError(
                f"method '{label}': --train {mode} has no training recordings"
                + (f" for held-out recording {fold}" if mode == "loo" else f" in data set {ds.name}"),
                hint="add recordings with --split train (bench datasets add), or use --train shipped",
            )
        no_gt = [r.name for r in train if ds.grader_for(r) is None]
        if no_gt:
            raise InputError(
                f"method '{label}': training recording(s) {', '.join(no_gt)} of data set {ds.name} "
                f"have no ground truth to train on",
                hint="register them with --masks, or leave them out of the training split",
            )
        grader = ds.grader_for(train[0])
        key = params_hash(
            {
                "method": ref,
                "code": method.code_version(),
                "settings": settings,
                "recordings": [(r.name, recording_fingerprint(r, ds.grader_for(r))) for r in train],
            }
        )
        return TrainUnit(label, ref, fold, train, grader, config.schedule, settings, device, key)

    if mode == "split":
        u = unit("split", tuple(ds.split("train")))
        return {r.name: u for r in recs}
    folds = ds.folds(recs)
    return {f.held_out.name: unit(f.held_out.name, f.train) for f in folds}


def _plan_method(plan: Plan, entry: str, config: RunConfig, ds: Dataset, recs: list[Recording], weights_cache) -> None:
    """Add one method's training, stage and segmentation units to ``plan``."""
    label, ref = split_label(entry)
    m = get_method(ref)
    ok, reason = m.is_available()
    if not ok:
        plan.failures[label] = f"unavailable: {reason}"
        return
    plan.adapters[label], plan.refs[label] = m, ref
    trains: dict[str, TrainUnit] = {}
    if m.learns:
        mode = _train_mode(m, config, ds, label, plan)
        plan.train_modes[label] = mode
        if mode != "shipped":
            trains = _train_units(label, ref, m, mode, config, ds, recs, weights_cache)
            for t in {id(t): t for t in trains.values()}.values():
                plan.trains.append(t)
    stages: dict[str, StageUnit] = {}
    for rec in recs:
        train = trains.get(rec.name)
        if train is not None:
            overrides: dict[str, Any] = {m.weights_param: str(weights_cache.weights_path(train))}
            overrides.update(dict.fromkeys(m.tuned_with_weights))
            points = [{}]
        else:
            overrides, points = {}, _points(m, rec, config.tune, config.max_grid)
        for point in points:
            given = {**overrides, **point}
            if config.device is not None and "device" in m.parameters:
                given["device"] = config.device
            params = m.check_params(rec, given)
            stage = None
            if m.staged:
                expensive = expensive_part(m.parameters, params)
                skey = params_hash({"method": ref, "recording": rec.name, "params": expensive})
                stage = stages.get(skey)
                if stage is None:
                    stage = stages[skey] = StageUnit(label, ref, rec, params, skey, train)
                    plan.stages.append(stage)
            plan.units.append(SegmentUnit(label, ref, rec, point, params, stage, train))


def plan_run(config: RunConfig, ds: Dataset, recs: list[Recording], weights_cache) -> Plan:
    """Units and dependencies of a run; parameters validated.

    Parameters
    ----------
    config : RunConfig
    ds : Dataset
        The data set (folds, training split, default grader).
    recs : list of Recording
        The recordings evaluated.
    weights_cache : WeightsCache
        Where trained weights live (their paths become the units' ``weights``).

    Raises
    ------
    InputError
        A parameter outside its bounds, a bad schedule, training recordings without ground truth.
    """
    plan = Plan()
    for entry in config.methods:
        _plan_method(plan, entry, config, ds, recs, weights_cache)
    for name in config.if_time_allows:
        verdict = admit(get_method(name), recs, tune=config.tune, max_grid=config.max_grid)
        note = verdict.reason + (": included in 'all'" if verdict.admitted else
                                 ": left out of 'all' (name it in --methods to run it anyway)")
        log.info(note)
        plan.notes.append(note)
        if verdict.admitted:
            _plan_method(plan, name, config, ds, recs, weights_cache)
    return plan


def describe_params(params: Mapping[str, Any]) -> str:
    """Parameters in one line for logs."""
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
