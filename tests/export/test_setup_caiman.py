"""bench setup caiman, against a small fake CaImAn source tree laid out like CaImAn 1.12 (offline, --no-deps)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from bench.cli import main
from bench.setup_caiman import _read_pyproject, caiman_requirements

# The fake builds with a tiny in-tree backend (below), so that pip needs nothing from an index: a fresh
# virtual environment has no wheel package, and CaImAn's real build (numpy, Cython, a C++ compiler) is
# not what this test is about.
PYPROJECT = """\
[build-system]
requires = []
build-backend = "fakebuild"
backend-path = ["."]

[project]
name = "caiman"
dynamic = ["version"]
dependencies = [
  "numpy <2.0.0, >=1.26",
  "opencv-python",
  "pyside6",
  "pytest",
  "scipy >= 1.10.1",
  "tensorflow >= 2.4.0, <2.16",
  "zarr",
]

[project.optional-dependencies]
jupyter = ["jupyter"]

[project.scripts]
caimanmanager = "caiman.caimanmanager:main"

"""

BACKEND = """\
import base64, hashlib, pathlib, zipfile

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    # Package files, model files as data under share/caiman (as CaImAn's setup.py installs them), and RECORD.
    root = pathlib.Path(__file__).parent
    version = (root / "VERSION").read_text().strip()
    info, data = f"caiman-{version}.dist-info", f"caiman-{version}.data/data/share/caiman"
    files = {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "caiman").rglob("*.py"))}
    files.update({f"{data}/model/{p.name}": p.read_bytes() for p in sorted((root / "model").iterdir())})
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\\nName: caiman\\nVersion: {version}\\n".encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\\nGenerator: fake\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    files[f"{info}/entry_points.txt"] = b"[console_scripts]\\ncaimanmanager = caiman.caimanmanager:main\\n"
    record = []
    for name, blob in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(blob).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(blob)}")
    files[f"{info}/RECORD"] = ("\\n".join(record + [f"{info}/RECORD,,"]) + "\\n").encode()
    name = f"caiman-{version}-py3-none-any.whl"
    with zipfile.ZipFile(pathlib.Path(wheel_directory) / name, "w") as zf:
        for path, blob in files.items():
            zf.writestr(path, blob)
    return name
"""

MANAGER = """\
import os, shutil, sys

def main():
    # Like CaImAn's: copy the installed share/caiman into the data folder, refusing an existing one.
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: caimanmanager install")
    target = os.environ.get("CAIMAN_DATA") or os.path.join(os.path.expanduser("~"), "caiman_data")
    if os.path.isdir(target):
        sys.exit(target + " already exists")
    shutil.copytree(os.path.join(sys.prefix, "share", "caiman"), target)
"""


def fake_caiman(root: Path, version: str) -> Path:
    """A tiny installable package named caiman: VERSION, pyproject, cnmf modules, caimanmanager, model files."""
    tree = root / f"CaImAn-{version}"
    files = {
        "VERSION": version + "\n",
        "pyproject.toml": PYPROJECT,
        "fakebuild.py": BACKEND,
        "caiman/__init__.py": "from importlib.metadata import version\n__version__ = version('caiman')\n",
        "caiman/caimanmanager.py": MANAGER,
        "caiman/source_extraction/__init__.py": "",
        "caiman/source_extraction/cnmf/__init__.py": "",
        "caiman/source_extraction/cnmf/online_cnmf.py": "",
        "model/cnn_model.json": "{}\n",
        "model/cnn_model.h5": "not a real model\n",
    }
    for rel, text in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(text)
    return tree


@pytest.fixture
def user_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("CAIMAN_DATA", str(tmp_path / "caiman_data"))
    for var in ("BENCH_PYTHON_CAIMAN_BATCH", "BENCH_PYTHON_CAIMAN_ONLINE"):
        monkeypatch.delenv(var, raising=False)
    cfg = tmp_path / "config" / "bench" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text('[python]\nmymethod = "/opt/other/python"\ncaiman-batch = "/old/python"\n\n[other]\nx = 1\n')
    return cfg


@pytest.mark.slow
def test_setup_builds_the_environment_and_configures_both_methods(tmp_path, user_dirs, capsys):
    import tomllib

    tree = fake_caiman(tmp_path / "src", "1.12.1")
    prefix = tmp_path / "env"
    assert main(["setup", "caiman", "--prefix", str(prefix), "--source", str(tree), "--no-deps"]) == 0
    assert "CaImAn 1.12.1 ready" in capsys.readouterr().out
    python = prefix / "bin" / "python"
    cfg = tomllib.loads(user_dirs.read_text())
    assert cfg["python"] == {"mymethod": "/opt/other/python", "caiman-batch": str(python), "caiman-online": str(python)}
    assert cfg["other"] == {"x": 1}  # the rest of the user's config is kept
    assert (tmp_path / "caiman_data" / "model" / "cnn_model.json").is_file()  # caimanmanager install ran
    # The suite now finds CaImAn in that interpreter (the adapters' own probe imports the cnmf modules there).
    assert main(["methods", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["caiman-batch"]["available"] and rows["caiman-online"]["available"], rows["caiman-batch"]["reason"]
    # A second run reuses the environment and the existing model folder.
    assert main(["setup", "caiman", "--prefix", str(prefix), "--source", str(tree), "--no-deps"]) == 0
    assert "already in" in capsys.readouterr().out


def test_unsupported_version_names_the_known_ones(tmp_path, user_dirs, capsys):
    tree = fake_caiman(tmp_path / "src", "1.9.0")
    archive = tmp_path / "CaImAn-1.9.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tree, arcname=tree.name)
    assert main(["setup", "caiman", "--prefix", str(tmp_path / "env"), "--source", str(archive), "--no-deps"]) == 2
    err = capsys.readouterr().err.strip()
    assert "CaImAn 1.9.0 is not a version known to work" in err and "1.12.x" in err and "\n" not in err
    assert not (tmp_path / "env").exists()  # refused before anything was built


def test_not_a_caiman_tree(tmp_path, user_dirs, capsys):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "caiman"\n')  # the PyPI impostor has no caiman/ tree
    assert main(["setup", "caiman", "--prefix", str(tmp_path / "env"), "--source", str(tmp_path)]) == 2
    assert "not a CaImAn source tree" in capsys.readouterr().err


def test_requirements_are_headless_cpu_and_without_gui_or_dev_tools(tmp_path):
    reqs = caiman_requirements(_read_pyproject(fake_caiman(tmp_path, "1.12.1")))
    assert reqs == [
        "numpy <2.0.0, >=1.26",
        "opencv-python-headless",
        "scipy >= 1.10.1",
        "tensorflow-cpu >= 2.4.0, <2.16",
        "zarr",
    ]
