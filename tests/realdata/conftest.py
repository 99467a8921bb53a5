"""Helpers of the real-data tests: a local HTTP server, writers of published layouts, fixture paths."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

SHARED_FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def real_fixtures() -> Path:
    """../shared/fixtures with the published marking files; skip when absent."""
    if not (SHARED_FIXTURES / "abo275").is_dir() or not (SHARED_FIXTURES / "neurofinder-test").is_dir():
        pytest.skip("../shared/fixtures is not present")
    return SHARED_FIXTURES


# ---------------------------------------------------------------------------- HTTP server
@dataclass
class ServerState:
    """Files served by path, and behaviours switched on per test."""

    files: dict[str, bytes] = field(default_factory=dict)
    cut_once: set[str] = field(default_factory=set)  # first GET sends half, then closes
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range)
    max_requests: int = 200


class _Handler(BaseHTTPRequestHandler):
    state: ServerState

    def log_message(self, *args):  # keep test output quiet
        pass

    def _lookup(self):
        st = self.server.state
        st.requests.append((self.command, self.path, self.headers.get("Range")))
        if len(st.requests) > st.max_requests:
            self.send_error(429)
            return None
        data = st.files.get(self.path)
        if data is None:
            self.send_error(404)
        return data

    def do_HEAD(self):
        data = self._lookup()
        if data is None:
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def do_GET(self):
        data = self._lookup()
        if data is None:
            return
        st = self.server.state
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in st.cut_once:
            st.cut_once.discard(self.path)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def http_server():
    """A ThreadingHTTPServer on 127.0.0.1 serving ``state.files``; yields (base_url, state); always shut down."""
    state = ServerState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.state = state
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ---------------------------------------------------------------------------- layout writers
def write_neurofinder_folder(
    folder: Path,
    *,
    n_frames: int = 6,
    shape: tuple[int, int] = (40, 60),
    rate: float = 7.5,
    ppm: float = 1.25,
    regions: list | None = None,
    seed: int = 0,
) -> np.ndarray:
    """A published-layout Neurofinder folder (images/imageNNNNN.tiff, info.json, regions/regions.json)."""
    import tifffile

    rng = np.random.default_rng(seed)
    movie = rng.integers(0, 4000, size=(n_frames, *shape), dtype=np.uint16)
    (folder / "images").mkdir(parents=True)
    for t in range(n_frames):
        tifffile.imwrite(folder / "images" / f"image{t:05d}.tiff", movie[t])
    info = {"id": folder.name, "rate-hz": rate, "pixels-per-micron": ppm, "indicator": "GCaMP6s", "dimensions": []}
    (folder / "info.json").write_text(json.dumps(info))
    if regions is not None:
        (folder / "regions").mkdir()
        (folder / "regions" / "regions.json").write_text(json.dumps(regions))
    return movie


def zip_folder(folder: Path, zpath: Path) -> Path:
    """Zip a folder the way the challenge did (top-level folder inside)."""
    import zipfile

    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            zf.write(p, p.relative_to(folder.parent).as_posix())
    return zpath


def square_region(r0: int, c0: int, size: int = 4) -> dict:
    return {"coordinates": [[r, c] for r in range(r0, r0 + size) for c in range(c0, c0 + size)]}


@pytest.fixture(scope="session")
def writers():
    """The layout writers above, as a fixture (test modules cannot import conftest under importlib mode)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        neurofinder_folder=write_neurofinder_folder, zip_folder=zip_folder, square_region=square_region
    )
