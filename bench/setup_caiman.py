"""``bench setup caiman``: CaImAn's own environment, built the way it must be, in one command.

CaImAn is not on PyPI (the PyPI name ``caiman`` is an unrelated tool) and needs
an older stack than the suite, so it gets its own virtual environment:

1. the source: a CaImAn tree (``--source DIR``), a release archive
   (``--source X.tar.gz|.zip``), or by default the known-good release archive
   downloaded from GitHub; its version (``VERSION`` file, else
   ``[project] version``) must be one known to work (:data:`KNOWN_GOOD`);
2. ``python -m venv PREFIX``;
3. the build tools first, because CaImAn's ``setup.py`` imports numpy and
   Cython and is built without isolation: ``numpy<2``, ``cython``,
   ``setuptools<81`` (CaImAn imports ``pkg_resources``), ``wheel``;
4. its dependencies from its ``pyproject.toml``, headless and CPU-only
   (``opencv-python`` -> ``opencv-python-headless``, ``tensorflow`` ->
   ``tensorflow-cpu``), GUI, notebook and developer tools dropped
   (:data:`DROPPED`), under the pins of :data:`PINS`;
5. ``pip install --no-build-isolation --no-deps SOURCE`` (a C++ compiler is needed);
6. ``caimanmanager install`` (CaImAn's data folder with the CNN model files,
   ``$CAIMAN_DATA`` or ``~/caiman_data``) unless that folder exists; a failure
   here is reported, not fatal (the adapters then run without the CNN);
7. an import check of ``caiman.source_extraction.cnmf`` and the version;
8. the interpreter written under ``[python]`` in the suite's user config for
   ``caiman-batch`` and ``caiman-online`` (other settings kept).

``install_deps=False`` (CLI ``--no-deps``) skips steps 3 and 4: for an
environment whose dependencies were installed by hand, and for the tests,
which build a small fake CaImAn tree offline.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from datasets.errors import InputError

__all__ = [
    "KNOWN_GOOD",
    "VERIFIED",
    "PINS",
    "DROPPED",
    "RELEASE_URL",
    "SetupResult",
    "caiman_requirements",
    "setup_caiman",
    "write_interpreter_config",
]

log = logging.getLogger(__name__)

#: Version prefixes known to work with the adapters (methods/caiman.py); VERIFIED end to end.
KNOWN_GOOD = ("1.12.",)
VERIFIED = "1.12.1"
RELEASE_URL = "https://github.com/flatironinstitute/CaImAn/archive/refs/tags/v{version}.tar.gz"
#: Constraints of CaImAn's environment (CaImAn 1.12 needs numpy 1, scipy before 1.17, TensorFlow before
#: 2.16 and pkg_resources, which setuptools 81 removes).
PINS = (
    "numpy<2",
    "scipy<1.17",
    "tensorflow-cpu==2.15.*",
    "setuptools<81",
    "opencv-python-headless<4.12",
)
BUILD_TOOLS = ("numpy<2", "cython", "setuptools<81", "wheel")
#: Requirements replaced by their headless / CPU builds.
RENAMED = {"opencv-python": "opencv-python-headless", "tensorflow": "tensorflow-cpu"}
#: GUI, notebook and developer tools in CaImAn's dependency list that running it never needs.
#: (Not ipywidgets: ``caiman.base.movies`` imports it when CaImAn is imported, as a real setup showed.)
DROPPED = frozenset(
    {
        "pyside6",
        "pyqt5",
        "pyqtgraph",
        "ipykernel",
        "jupyter",
        "jupyter-bokeh",
        "tk",
        "pytest",
        "pytest-cov",
        "coverage",
        "mypy",
        "yapf",
        "numpydoc",
    }
)
METHODS = ("caiman-batch", "caiman-online")
_PIP_TIMEOUT_S = 3600.0


@dataclass
class SetupResult:
    """What :func:`setup_caiman` did."""

    python: Path
    version: str
    source: Path
    config: Path
    models: str
    steps: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """Lines for people."""
        return "\n".join(
            [
                *self.steps,
                f"CaImAn {self.version} ready: {self.python}",
                f"model files: {self.models}",
                f"{', '.join(METHODS)} now run under it ({self.config}); check with: python -m bench methods",
            ]
        )


# ---------------------------------------------------------------------------- source and version
def _default_prefix() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "bench" / "caiman"


def _unpack(archive: Path, into: Path) -> Path:
    """The single top folder of a CaImAn release archive, extracted under ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.endswith((".tar.gz", ".tgz", ".tar")):
            with tarfile.open(archive) as tf:
                tops = {m.name.split("/", 1)[0] for m in tf.getmembers()}
                tf.extractall(into, filter="data")  # no absolute paths, links out of the tree or devices
        elif archive.suffix == ".zip":
            with zipfile.ZipFile(archive) as zf:
                tops = {n.split("/", 1)[0] for n in zf.namelist()}
                zf.extractall(into)
        else:
            raise InputError("not a CaImAn tree or archive", path=archive, hint="give a folder, .tar.gz or .zip")
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"unreadable archive ({exc})", path=archive) from exc
    if len(tops) != 1:
        raise InputError(f"expected one top folder in the archive, found {sorted(tops)[:5]}", path=archive)
    return into / tops.pop()


def _download_release(into: Path) -> Path:
    url = RELEASE_URL.format(version=VERIFIED)
    into.mkdir(parents=True, exist_ok=True)
    dest = into / f"CaImAn-{VERIFIED}.tar.gz"
    if not dest.is_file():
        log.info("downloading %s", url)
        tmp = dest.with_name(dest.name + ".part")
        try:
            with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as fh:
                shutil.copyfileobj(r, fh)
        except OSError as exc:
            raise InputError(
                f"cannot download CaImAn {VERIFIED} ({exc})",
                hint=f"download {url} yourself and pass it with --source",
            ) from exc
        tmp.replace(dest)
    return dest


def _read_pyproject(tree: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    path = tree / "pyproject.toml"
    if not path.is_file():
        raise InputError("not a CaImAn source tree (no pyproject.toml)", path=tree)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"invalid pyproject.toml ({exc})", path=path) from exc
    if data.get("project", {}).get("name", "").lower() != "caiman" or not (tree / "caiman").is_dir():
        raise InputError("not a CaImAn source tree (no project 'caiman' with a caiman/ package)", path=tree)
    return data


def _tree_version(tree: Path, pyproject: dict) -> str:
    version_file = tree / "VERSION"  # CaImAn's setup.py reads its version from here
    version = version_file.read_text().strip() if version_file.is_file() else pyproject["project"].get("version", "")
    if not version:
        raise InputError("cannot tell the CaImAn version (no VERSION file or [project] version)", path=tree)
    return version


def check_version(version: str, tree: Path) -> None:
    """Refuse versions the adapters were not made for, naming the ones known to work."""
    if not version.startswith(KNOWN_GOOD):
        known = ", ".join(p + "x" for p in KNOWN_GOOD)
        raise InputError(
            f"CaImAn {version} is not a version known to work with this suite (known: {known}; verified: {VERIFIED})",
            path=tree,
            hint=f"use the v{VERIFIED} release: {RELEASE_URL.format(version=VERIFIED)}",
        )


# ---------------------------------------------------------------------------- requirements
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def caiman_requirements(pyproject: dict) -> list[str]:
    """CaImAn's ``[project] dependencies``, headless and CPU-only, without GUI and developer tools.

    Optional extras (``jupyter``) are not installed.
    """
    out = []
    for req in pyproject.get("project", {}).get("dependencies", []):
        m = _NAME.match(req)
        if not m:
            raise InputError(f"cannot read CaImAn requirement {req!r}")
        name, extras, rest = m.group(1), m.group(2) or "", m.group(3).strip()
        key = _normalise(name)
        if key in DROPPED:
            continue
        name = RENAMED.get(key, name)
        out.append(f"{name}{extras} {rest}".strip() if rest else f"{name}{extras}")
    return out


# ---------------------------------------------------------------------------- steps
def _run(cmd: list[str], what: str, *, env: dict | None = None, cwd: Path | None = None) -> str:
    log.info("%s: %s", what, " ".join(cmd))
    try:
        r = subprocess.run(
            cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=_PIP_TIMEOUT_S, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"{what} failed ({exc})") from exc
    if r.returncode != 0:
        lines = (r.stderr or r.stdout).strip().splitlines()
        # pip ends with generic notes; the lines that name the error say more.
        tail = " | ".join(([ln.strip() for ln in lines if "error" in ln.lower()] or lines)[-3:])
        raise InputError(f"{what} failed (exit {r.returncode}): {tail}")
    return r.stdout


def _venv_python(prefix: Path) -> Path:
    return prefix / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _make_venv(prefix: Path, base_python: str) -> Path:
    python = _venv_python(prefix)
    if python.is_file():
        return python  # a second run reuses the environment
    if prefix.exists() and any(prefix.iterdir()):
        raise InputError("exists and is not a virtual environment", path=prefix, hint="choose another --prefix")
    _run([base_python, "-m", "venv", str(prefix)], "creating the virtual environment")
    return python


def _install_models(python: Path) -> str:
    """``caimanmanager install`` unless CaImAn's data folder exists; a failure is reported, not fatal."""
    manager = python.parent / "caimanmanager"
    datadir = Path(os.environ.get("CAIMAN_DATA") or Path.home() / "caiman_data")
    if (datadir / "model").is_dir():
        return f"already in {datadir / 'model'}"
    if not manager.is_file():
        return "not installed (no caimanmanager in the environment)"
    try:
        _run([str(manager), "install"], "caimanmanager install")
    except InputError as exc:
        log.warning("%s; the CaImAn methods run without the CNN classifier", exc)
        return f"not installed ({exc})"
    return f"installed in {datadir / 'model'}"


def _import_check(python: Path, version: str) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-caiman-check-") as tmp:
        env = {**os.environ, "CAIMAN_TEMP": tmp, "MPLCONFIGDIR": tmp, "TF_CPP_MIN_LOG_LEVEL": "3"}
        env.pop("PYTHONPATH", None)  # the environment's own packages, not the caller's
        out = _run(
            [str(python), "-c", "import caiman, caiman.source_extraction.cnmf; print(caiman.__version__)"],
            "importing CaImAn in its environment",
            env=env,
            cwd=Path(tmp),
        )
    got = out.strip().splitlines()[-1] if out.strip() else ""
    if got != version:
        raise InputError(f"the environment imports CaImAn {got or '?'}, the source tree is {version}")


def write_interpreter_config(python: Path, methods: tuple[str, ...] = METHODS) -> Path:
    """Set ``[python] <method> = "<python>"`` in the suite's user config, keeping everything else.

    Returns
    -------
    Path
        The config file (``$XDG_CONFIG_HOME/bench/config.toml``).
    """
    from methods.worker import config_path, user_config

    path = config_path()
    user_config()  # a damaged file is reported before it is edited
    lines = path.read_text().splitlines() if path.is_file() else []
    keys = {f'"{m}"' for m in methods} | set(methods)
    new = [f"{m} = {json.dumps(str(python))}" for m in methods]  # a JSON string is a valid TOML basic string
    out, in_python, placed = [], False, False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("["):
            if in_python and not placed:
                out += new
                placed = True
            in_python = stripped == "[python]"
            out.append(line)
            continue
        if in_python and stripped.split("=", 1)[0].strip() in keys:
            continue  # replaced below
        out.append(line)
    if in_python and not placed:
        out += new
        placed = True
    if not placed:
        out += ([""] if out else []) + ["[python]", *new]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(out) + "\n")
    os.replace(tmp, path)
    return path


def setup_caiman(
    prefix: str | Path | None = None,
    source: str | Path | None = None,
    *,
    install_deps: bool = True,
    base_python: str | None = None,
) -> SetupResult:
    """Build CaImAn's environment and point the suite's CaImAn methods at it.

    Parameters
    ----------
    prefix : str or Path, optional
        Folder of the virtual environment (default ``$XDG_DATA_HOME/bench/caiman``,
        i.e. ``~/.local/share/bench/caiman``). Reused when it already is one.
    source : str or Path, optional
        CaImAn source tree or release archive; default: the :data:`VERIFIED` release, downloaded.
    install_deps : bool
        Install the build tools and CaImAn's dependencies (False: CaImAn alone, ``--no-deps``).
    base_python : str, optional
        Interpreter that creates the environment (default: this one; CaImAn 1.12 was verified
        with Python 3.11, and TensorFlow 2.15 has no wheels beyond 3.11).

    Raises
    ------
    InputError
        For a missing or foreign source, an unsupported version, a failed step
        (the command's last lines are quoted), or a foreign ``prefix``.
    """
    prefix = (Path(prefix).expanduser() if prefix else _default_prefix()).absolute()
    result_steps = []
    src = Path(source).expanduser() if source else _download_release(prefix.parent / "caiman-src")
    if not src.exists():
        raise InputError("CaImAn source not found", path=src, hint="give a source tree or release archive")
    tree = src if src.is_dir() else _unpack(src, prefix.parent / "caiman-src")
    pyproject = _read_pyproject(tree)
    version = _tree_version(tree, pyproject)
    check_version(version, tree)
    result_steps.append(f"source: CaImAn {version} in {tree}")

    python = _make_venv(prefix, base_python or sys.executable)
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    if install_deps:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
            fh.write("\n".join(PINS) + "\n")
            constraints = fh.name
        try:
            _run([*pip, "-c", constraints, *BUILD_TOOLS], "installing the build tools")
            reqs = caiman_requirements(pyproject)
            _run([*pip, "-c", constraints, *reqs], "installing CaImAn's dependencies")
        finally:
            os.unlink(constraints)
        result_steps.append(f"dependencies: {len(reqs)} requirements (headless, CPU TensorFlow) and build tools")
    # The tree alone: no index, no isolation (the build uses the numpy and Cython installed above).
    _run([*pip, "--no-index", "--no-build-isolation", "--no-deps", str(tree)], "building and installing CaImAn")
    models = _install_models(python)
    _import_check(python, version)
    config = write_interpreter_config(python)
    return SetupResult(python=python, version=version, source=tree, config=config, models=models, steps=result_steps)
