"""Movies and recordings own their persistence: specs that reopen every on-disk movie lazily.

Also: reading a Neurofinder zip movie in chunks decompresses only the frames asked for
(no step reads a whole movie), and the datasets package has no import cycle.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile

from datasets.errors import InputError
from datasets.masks import Masks
from datasets.movies import ArrayMovie, HDF5Movie, NpyMovie, TiffMovie, ZipTiffMovie, movie_from_spec
from datasets.neurofinder import NeurofinderProvider
from datasets.records import Recording

SHAPE = (9, 16, 20)
CROP = {"rows": slice(2, 14), "cols": slice(1, 18), "frames": slice(1, 8)}


@pytest.fixture
def movie():
    return np.random.default_rng(0).integers(0, 5000, size=SHAPE).astype(np.uint16)


def _files(tmp_path: Path, m: np.ndarray) -> dict:
    np.save(tmp_path / "m.npy", m)
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f.create_dataset("a/b", data=m)
    tifffile.imwrite(tmp_path / "m.tif", m)
    frames = []
    for t in range(m.shape[0]):
        tifffile.imwrite(tmp_path / f"f{t}.tif", m[t])
        frames.append(tmp_path / f"f{t}.tif")
    import zipfile

    members = [f"x/images/image{t:05d}.tiff" for t in range(m.shape[0])]
    with zipfile.ZipFile(tmp_path / "m.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for t, name in enumerate(members):
            zf.write(frames[t], name)
    return {
        "npy": lambda **c: NpyMovie(tmp_path / "m.npy", **c),
        "hdf5": lambda **c: HDF5Movie(tmp_path / "m.h5", "a/b", **c),
        "tiff": lambda **c: TiffMovie(tmp_path / "m.tif", **c),
        "tiff-frames": lambda **c: TiffMovie(frames, **c),
        "zip-tiff": lambda **c: ZipTiffMovie(tmp_path / "m.zip", members, **c),
    }


@pytest.mark.parametrize("kind", ["npy", "hdf5", "tiff", "tiff-frames", "zip-tiff"])
def test_every_file_movie_round_trips_through_its_spec(tmp_path, movie, kind):
    opened = _files(tmp_path, movie)[kind](check_finite=True, **CROP)
    spec = json.loads(json.dumps(opened.to_spec()))  # JSON-able, as it crosses to a worker
    again = movie_from_spec(spec)
    assert type(again) is type(opened) and again.shape == opened.shape == (7, 12, 17)
    assert again.check_finite and again.border == opened.border == (2, 2, 1, 2)
    np.testing.assert_array_equal(again.read(1, 4), movie[2:5, 2:14, 1:18])


def test_in_memory_movie_has_no_spec_and_unknown_kind_is_refused(movie):
    with pytest.raises(InputError, match="memory"):
        ArrayMovie(movie).to_spec()
    with pytest.raises(InputError, match="unknown movie kind"):
        movie_from_spec({"kind": "avi", "path": "x"})


def test_recording_spec_round_trip_without_ground_truth(tmp_path, movie):
    m = NpyMovie(_save(tmp_path, movie), rows=slice(1, 15), cols=slice(3, 20))
    gt = Masks.from_dense(np.ones((1, 14, 17), bool))
    rec = Recording("r1", m, 7.5, 1.1, {"default": gt}, "GCaMP6s", "train", "g1", provenance={"x": 1})
    spec = json.loads(json.dumps(rec.to_spec()))
    assert spec["crop"] == [1, 1, 3, 0] and spec["shape"] == [14, 17] and "ground_truths" not in spec
    back = Recording.from_spec(spec)
    assert (back.name, back.fps, back.um_per_px, back.indicator, back.split, back.group) == (
        "r1",
        7.5,
        1.1,
        "GCaMP6s",
        "train",
        "g1",
    )
    assert back.crop == (1, 1, 3, 0) and back.graders == () and back.frame_shape == (14, 17)
    np.testing.assert_array_equal(back.movie.read(0, 2), movie[:2, 1:15, 3:20])


def test_recording_spec_spills_an_in_memory_movie_in_chunks(tmp_path, movie):
    rec = Recording("mem", ArrayMovie(movie, frames=slice(2, 9)), 5.0, 1.0)
    with pytest.raises(InputError, match="memory"):
        rec.to_spec()
    spec = rec.to_spec(spill=tmp_path / "work")
    assert spec["movie"]["kind"] == "npy" and Path(spec["movie"]["path"]).parent == tmp_path / "work"
    np.testing.assert_array_equal(Recording.from_spec(spec).movie.read(), movie[2:])


def test_recording_without_movie_round_trips():
    rec = Recording("published", None, 30.0, 0.78, shape=(487, 487))
    back = Recording.from_spec(rec.to_spec())
    assert back.movie is None and back.frame_shape == (487, 487) and back.crop is None


def _save(tmp_path, m):
    np.save(tmp_path / "r.npy", m)
    return tmp_path / "r.npy"


# ---------------------------------------------------------------------------- laziness of the zip movie
def test_neurofinder_zip_is_read_in_chunks_never_whole(tmp_path, writers, monkeypatch):
    root = tmp_path / "data"
    src = tmp_path / "src" / "neurofinder.01.00"
    frames = writers.neurofinder_folder(src, n_frames=30, shape=(20, 20), regions=[writers.square_region(8, 8)])
    (root / "neurofinder").mkdir(parents=True)
    writers.zip_folder(src, root / "neurofinder" / "neurofinder.01.00.zip")

    decoded: list[str] = []
    original = ZipTiffMovie._decode

    def counting(self, zf, member, tifffile):
        decoded.append(member.rsplit("/", 1)[-1])
        return original(self, zf, member, tifffile)

    monkeypatch.setattr(ZipTiffMovie, "_decode", counting)
    rec = NeurofinderProvider().load(root)["01.00"]
    opened = len(decoded)
    assert opened <= 2  # the first frame's header (probe and cropped movie), nothing else

    # The worker gets a spec, reopens the zip lazily and reads blocks: only those frames are decompressed.
    spec = json.loads(json.dumps(rec.to_spec()))
    assert spec["movie"]["kind"] == "zip-tiff" and spec["crop"] == [4, 4, 4, 4]
    decoded.clear()
    worker = Recording.from_spec(spec)
    assert decoded == ["image00000.tiff"]  # reopening reads the first frame's header only
    decoded.clear()
    block = worker.movie.read(10, 14)
    assert decoded == [f"image{t:05d}.tiff" for t in range(10, 14)]
    np.testing.assert_array_equal(block, frames[10:14, 4:16, 4:16])
    decoded.clear()
    for _ in worker.movie.chunks(8):
        assert len(decoded) <= 8  # one chunk's frames at a time
        decoded.clear()


# ---------------------------------------------------------------------------- import graph
def test_datasets_modules_import_without_cycles():
    """Imports among datasets/ modules (also those inside functions) form no cycle."""
    pkg = Path(__file__).resolve().parents[2] / "datasets"
    graph: dict[str, set[str]] = {}
    for path in pkg.rglob("*.py"):
        rel = path.relative_to(pkg.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("datasets."):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("datasets.")}
        graph[name] = deps

    def visit(node, path):
        if node in path:
            pytest.fail("import cycle: " + " -> ".join([*path[path.index(node) :], node]))
        for dep in graph.get(node, ()):
            if not dep.startswith(node + "."):  # a package importing its own submodules is no cycle
                visit(dep, [*path, node])

    for module in graph:
        visit(module, [])


def test_show_reads_a_real_recording_in_chunks(tmp_path, monkeypatch):
    """The figure of a recording without simulator truth reads its movie in bounded blocks (~32 MB at most)."""
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    from datasets.show import show_recording

    m = np.random.default_rng(0).integers(100, 400, size=(700, 24, 24)).astype(np.uint16)
    st = np.zeros((2, 24, 24), bool)
    st[0, 3:7, 3:7] = st[1, 12:18, 10:14] = True
    rec = Recording("r", NpyMovie(_save(tmp_path, m)), 10.0, 1.0, {"default": Masks.from_dense(st)})
    sizes = []
    original = NpyMovie.read

    def spy(self, start=0, stop=None):
        block = original(self, start, stop)
        sizes.append(block.shape[0])
        return block

    monkeypatch.setattr(NpyMovie, "read", spy)
    assert show_recording(rec, tmp_path / "r.png").stat().st_size > 0
    assert sizes and max(sizes) * m.shape[1] * m.shape[2] * 8 <= 2**25  # float64 copies of a block: <= 32 MiB


def test_zip_frames_of_different_sizes_are_found_from_headers(tmp_path, monkeypatch):
    import zipfile

    members = []
    with zipfile.ZipFile(tmp_path / "z.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for t in range(6):
            frame = np.random.default_rng(t).integers(0, 9, size=(10, 12) if t != 4 else (10, 13)).astype(np.uint16)
            tifffile.imwrite(tmp_path / "f.tif", frame, compression="zlib")  # compressed: member sizes differ
            zf.write(tmp_path / "f.tif", f"images/image{t:05d}.tiff")
            members.append(f"images/image{t:05d}.tiff")
    decoded = []
    original = ZipTiffMovie._decode
    monkeypatch.setattr(ZipTiffMovie, "_decode", lambda self, zf, m, tf: decoded.append(m) or original(self, zf, m, tf))
    with pytest.raises(InputError, match="image00004.tiff is 10x13") as err:
        ZipTiffMovie(tmp_path / "z.zip", members)
    assert "one size" in str(err.value) and decoded == [members[0]]
