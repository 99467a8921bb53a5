"""fetch(): full download, resume after a cut, checksum rejection, offline message, disk check (local server only)."""

from __future__ import annotations

import hashlib
import json
import socket
from collections import namedtuple

import pytest

import datasets.fetch as fetch_mod
from datasets.errors import InputError
from datasets.fetch import MANIFEST, OfflineError, fetch
from datasets.markings import MARKINGS
from datasets.neurofinder import NeurofinderProvider

REL_TEST = "Neurofinder/test/Grader1/FinalMasks_100.mat"
REL_TRAIN = "Neurofinder/train/Grader1/FinalMasks_100.mat"


def _serve(state, *, zip_body=b"Z" * 300_000, train_zip=b"T" * 1000, real=None):
    """Serve 01.00 (train zip + grader-1 file) and 01.00.test; marking files must match the published checksums."""
    state.files["/nf/neurofinder.01.00.test.zip"] = zip_body
    state.files["/nf/neurofinder.01.00.zip"] = train_zip
    for rel in (REL_TEST, REL_TRAIN):
        state.files[f"/gh/Markings/{rel}"] = (real or {}).get(rel, b"not the published file")


def _urls(base):
    return {"neurofinder": f"{base}/nf", "stneuronet": f"{base}/gh"}


@pytest.fixture
def published(real_fixtures):
    """The real grader-1 test file for 01.00.test, whose size and SHA-256 the table pins."""
    data = (real_fixtures / "neurofinder-test" / "GT_100.mat").read_bytes()
    assert (len(data), hashlib.sha256(data).hexdigest()) == MARKINGS[REL_TEST]
    return data


def test_full_download_records_checksums(tmp_path, http_server, published):
    base, state = http_server
    _serve(state, real={REL_TEST: published})
    report = fetch("neurofinder", tmp_path, only=["01.00.test"], base_urls=_urls(base), progress=False)
    zpath = tmp_path / "neurofinder" / "neurofinder.01.00.test.zip"
    mpath = tmp_path / "stneuronet" / "Markings" / REL_TEST
    assert zpath.read_bytes() == state.files["/nf/neurofinder.01.00.test.zip"]
    assert mpath.read_bytes() == published
    assert sorted(report.downloaded) == sorted([f"neurofinder/{zpath.name}", f"stneuronet/Markings/{REL_TEST}"])
    assert not list(tmp_path.rglob("*.part"))
    manifest = json.loads((tmp_path / MANIFEST).read_text())["files"]
    assert manifest[f"neurofinder/{zpath.name}"]["sha256"] == hashlib.sha256(zpath.read_bytes()).hexdigest()
    n = len(state.requests)
    assert n <= 6

    # A second call finds everything in place and transfers nothing.
    again = fetch("neurofinder", tmp_path, only=["01.00.test"], base_urls=_urls(base), progress=False)
    assert again.downloaded == [] and len(again.present) == 2 and len(state.requests) == n


def test_resume_after_a_cut_connection(tmp_path, http_server, published):
    base, state = http_server
    _serve(state, real={REL_TEST: published})
    state.cut_once.add("/nf/neurofinder.01.00.test.zip")
    fetch("neurofinder", tmp_path, only=["01.00.test"], base_urls=_urls(base), progress=False)
    body = state.files["/nf/neurofinder.01.00.test.zip"]
    assert (tmp_path / "neurofinder" / "neurofinder.01.00.test.zip").read_bytes() == body
    gets = [r for r in state.requests if r[0] == "GET" and r[1] == "/nf/neurofinder.01.00.test.zip"]
    assert len(gets) == 2 and gets[0][2] is None and gets[1][2] == f"bytes={len(body) // 2}-"


def test_interrupted_call_keeps_part_and_next_call_resumes(tmp_path, http_server, published):
    base, state = http_server
    _serve(state, real={REL_TEST: published})
    state.cut_once.add("/nf/neurofinder.01.00.test.zip")
    with pytest.raises(InputError, match="run the same command again"):
        fetch("neurofinder", tmp_path, only=["01.00.test"], base_urls=_urls(base), progress=False, retries=0)
    part = tmp_path / "neurofinder" / "neurofinder.01.00.test.zip.part"
    assert part.stat().st_size == 150_000
    fetch("neurofinder", tmp_path, only=["01.00.test"], base_urls=_urls(base), progress=False)
    assert not part.exists()
    assert state.requests[-1][2] is None or any(r[2] == "bytes=150000-" for r in state.requests)
    assert any(r[2] == "bytes=150000-" for r in state.requests)


def test_checksum_mismatch_is_rejected_and_nothing_else_deleted(tmp_path, http_server, published):
    base, state = http_server
    # The train marking file served has the published size but not the published content.
    _serve(state, real={REL_TEST: published, REL_TRAIN: b"\0" * MARKINGS[REL_TRAIN][0]})
    fetch("neurofinder", tmp_path, only=["01.00.test"], base_urls=_urls(base), progress=False)
    done = tmp_path / "neurofinder" / "neurofinder.01.00.test.zip"
    with pytest.raises(InputError, match="checksum") as err:
        fetch("neurofinder", tmp_path, only=["01.00"], base_urls=_urls(base), progress=False)
    assert "nothing else was deleted" in str(err.value) and REL_TRAIN in str(err.value)
    assert not (tmp_path / "stneuronet" / "Markings" / REL_TRAIN).exists()
    assert not list(tmp_path.rglob("*.part"))
    assert done.exists() and (tmp_path / "stneuronet" / "Markings" / REL_TEST).exists()


def test_recorded_checksum_is_verified_on_a_later_download(tmp_path, http_server):
    base, state = http_server
    state.files["/nf/neurofinder.01.00.test.zip"] = b"A" * 5000
    urls = _urls(base)
    prov = NeurofinderProvider()
    only_zip = [rf for rf in prov.remote_files(tmp_path, ["01.00.test"], urls) if rf.dest.endswith(".zip")]
    # Serve the zip only (a provider stub avoids the marking files).
    Stub = namedtuple("Stub", "name remote_files")
    stub = Stub("neurofinder", lambda root, only=None, base_urls=None: only_zip)
    orig = fetch_mod._provider
    fetch_mod._provider = lambda name: stub
    try:
        fetch("neurofinder", tmp_path, base_urls=urls, progress=False)
        zpath = tmp_path / "neurofinder" / "neurofinder.01.00.test.zip"
        zpath.rename(tmp_path / "kept-by-user.zip")  # the user moves it away; the manifest remembers it
        state.files["/nf/neurofinder.01.00.test.zip"] = b"B" * 5000  # the source changes
        with pytest.raises(InputError, match="checksum mismatch"):
            fetch("neurofinder", tmp_path, base_urls=urls, progress=False)
        assert (tmp_path / "kept-by-user.zip").exists() and not zpath.exists()
    finally:
        fetch_mod._provider = orig


def test_offline_message_lists_urls_and_folders(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    urls = {"neurofinder": f"http://127.0.0.1:{port}/nf", "stneuronet": f"http://127.0.0.1:{port}/gh"}
    with pytest.raises(OfflineError) as err:
        fetch("neurofinder", tmp_path, only=["02.01"], base_urls=urls, progress=False, timeout=5)
    text = str(err.value)
    assert f"http://127.0.0.1:{port}/nf/neurofinder.02.01.zip" in text
    assert str(tmp_path / "neurofinder" / "neurofinder.02.01.zip") in text
    assert "Markings/Neurofinder/train/Grader1/FinalMasks_201.mat" in text
    assert not any(tmp_path.rglob("*.part"))


def test_not_enough_disk_space(tmp_path, http_server, monkeypatch):
    base, state = http_server
    _serve(state, real={REL_TEST: b"\0" * MARKINGS[REL_TEST][0]})
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(fetch_mod.shutil, "disk_usage", lambda p: Usage(10**9, 10**9, 1000))
    with pytest.raises(InputError, match="free space") as err:
        fetch("neurofinder", tmp_path, only=["01.00.test"], base_urls=_urls(base), progress=False)
    assert "nothing was downloaded" in str(err.value)
    assert not any(r[0] == "GET" for r in state.requests)


def test_unknown_name_and_id_suggest_the_closest(tmp_path):
    with pytest.raises(InputError, match="neurofinder"):
        fetch("neurofindr", tmp_path)
    with pytest.raises(InputError, match="did you mean '01.01'"):
        fetch("neurofinder", tmp_path, only=["01.0"])
    with pytest.raises(InputError, match="abo has no experiment"):
        fetch("abo", tmp_path, only=["12345"])


def test_env_var_overrides_base_url(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_URL_ABO", "http://127.0.0.1:9/abo/")
    from datasets.abo import ABOProvider

    files = ABOProvider().remote_files(tmp_path, only=["501271265"])
    assert files[0].url == "http://127.0.0.1:9/abo/ophys_experiment_501271265.h5"
    # 175 um: the Allen file is pinned; the FinalGT file is listed but optional (not retrievable).
    by = {f.dest.rsplit("/", 2)[-2]: f for f in files[1:]}
    assert by["Allen"].sha256 and not by["Allen"].optional
    assert by["FinalGT"].optional and by["FinalGT"].sha256 is None


def test_optional_file_missing_at_source_is_reported_not_fatal(tmp_path, http_server):
    base, state = http_server
    urls = {"abo": f"{base}/abo", "stneuronet": f"{base}/gh"}
    from datasets.abo import ABOProvider

    files = ABOProvider().remote_files(tmp_path, only=["markings", "539670003"], base_urls=urls)
    served = [f for f in files if not f.optional]
    for f in served:
        state.files[f.url[len(base) :]] = b"x"  # wrong content, but a pinned size mismatch is caught first
    with pytest.raises(InputError, match="published file is"):
        fetch("abo", tmp_path, only=["markings", "539670003"], base_urls=urls, progress=False)
    assert not any(r[0] == "GET" for r in state.requests)


def test_bench_fetch_command_with_base_url_overrides(tmp_path, http_server, published, monkeypatch, capsys):
    from bench.cli import main

    base, state = http_server
    _serve(state, real={REL_TEST: published})
    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    # One source by flag (KEY=URL), the other by environment variable.
    monkeypatch.setenv("BENCH_URL_STNEURONET", f"{base}/gh")
    argv = ["fetch", "neurofinder", "--only", "01.00.test", "--base-url", f"neurofinder={base}/nf", "--no-progress"]
    assert main(argv) == 0
    assert "2 file(s) downloaded" in capsys.readouterr().out
    assert (tmp_path / "neurofinder" / "neurofinder.01.00.test.zip").is_file()
    assert (tmp_path / "stneuronet" / "Markings" / REL_TEST).read_bytes() == published


def test_bench_fetch_bad_base_url_is_one_line(tmp_path, monkeypatch, capsys):
    from bench.cli import main

    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    assert main(["fetch", "neurofinder", "--base-url", "neurofinder=not-a-url"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--base-url" in err and "not a URL" in err
