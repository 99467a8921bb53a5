"""Download public data sets: resume, size and checksum checks, progress, and an offline fallback.

``fetch(name, root)`` asks the data set's provider for its :class:`RemoteFile` list
(``provider.remote_files(root, only=..., base_urls=...)``) and, for each file not
yet on disk:

1. probes every URL (HEAD) for its size, so that an unreachable host is reported
   before anything is written and the free disk space can be checked against the
   total still to download;
2. downloads into ``<file>.part``, resuming an existing part with an HTTP
   ``Range`` request (and retrying a cut connection the same way);
3. checks the size and the SHA-256: against the published value when it is known,
   else against the value recorded in ``<root>/fetch-manifest.json`` by an earlier
   download; the first download of a file records its checksum there;
4. moves the part into place with an atomic rename.

A failed step removes at most its own ``.part`` file (a checksum mismatch) and
never a file already in place. Offline, the error lists every URL and the folder
to put it in, so the files can be copied by hand.

Base URLs come from :data:`datasets.remote.BASE_URLS`, overridable per call
(``base_urls={"neurofinder": "http://127.0.0.1:8000"}``) or by environment variable
(``BENCH_URL_NEUROFINDER``, ``BENCH_URL_ABO``, ``BENCH_URL_STNEURONET``).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from datasets.errors import InputError
from datasets.inventory import format_bytes
from datasets.jsonio import read_json, write_json_atomic
from datasets.registry import DatasetProvider, closest, data_root
from datasets.remote import RemoteFile

__all__ = ["fetch", "FetchReport", "OfflineError", "fetchable", "manual_instructions", "MANIFEST", "sha256_of"]

log = logging.getLogger(__name__)

#: Checksums recorded by earlier downloads, relative to the data root.
MANIFEST = "fetch-manifest.json"
_CHUNK = 1 << 20
_USER_AGENT = "stnn-bench-fetch/1"
# Errors that mean "the connection broke": retried with a Range request.
_TRANSIENT = (http.client.IncompleteRead, http.client.RemoteDisconnected, ConnectionError, TimeoutError, socket.timeout)


class OfflineError(InputError):
    """A source could not be reached; the message says what to download by hand and where."""


@dataclass
class FetchReport:
    """What one :func:`fetch` call did.

    Attributes
    ----------
    dataset : str
        The data set fetched.
    root : Path
        The data root.
    downloaded, present, unavailable : list of str
        Destinations (relative to ``root``) downloaded now, already in place,
        and optional files the source did not serve.
    bytes_downloaded : int
        Bytes transferred in this call.
    """

    dataset: str
    root: Path
    downloaded: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    bytes_downloaded: int = 0

    def summary(self) -> str:
        """One line for the CLI."""
        text = (
            f"{self.dataset}: {len(self.downloaded)} file(s) downloaded ({format_bytes(self.bytes_downloaded)}), "
            f"{len(self.present)} already present"
        )
        if self.unavailable:
            text += f", {len(self.unavailable)} not published by the source: {', '.join(self.unavailable)}"
        return text + f" under {self.root}"


# ---------------------------------------------------------------------------- providers
def fetchable() -> dict[str, DatasetProvider]:
    """Data sets that can be downloaded: the built-in real sets plus any registered provider with ``remote_files``."""
    from datasets.abo import ABOProvider
    from datasets.neurofinder import NeurofinderProvider
    from datasets.registry import providers

    found: dict[str, DatasetProvider] = {}
    try:
        found.update({n: p for n, p in providers().items() if hasattr(p, "remote_files")})
    except Exception as exc:  # noqa: BLE001 - a broken plugin must not block fetching the built-in sets
        log.warning("could not list registered data sets: %s", exc)
    for prov in (NeurofinderProvider(), ABOProvider()):
        found.setdefault(prov.name, prov)
    return dict(sorted(found.items()))


def _provider(name: str) -> DatasetProvider:
    provs = fetchable()
    if name not in provs:
        from datasets.registry import providers

        try:
            generated = [n for n in providers() if n not in provs]
        except Exception:  # noqa: BLE001
            generated = []
        hint = closest(name, provs)
        if name in generated:
            hint = f"'{name}' is generated or registered locally, not downloaded"
        raise InputError(f"no downloadable data set '{name}'", hint=hint)
    return provs[name]


# ---------------------------------------------------------------------------- manifest
def _manifest_path(root: Path) -> Path:
    return Path(root) / MANIFEST


def _read_manifest(root: Path) -> dict:
    path = _manifest_path(root)
    if not path.is_file():
        return {"format": "bench-fetch-manifest-v1", "files": {}}
    data = read_json(path)
    data.setdefault("files", {})
    return data


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------- instructions
def manual_instructions(files: Iterable[RemoteFile], root: Path) -> str:
    """Lines telling a person which URL to download into which folder."""
    lines = []
    for rf in files:
        dest = Path(root) / rf.dest
        note = " (may not be published)" if rf.optional else ""
        lines.append(f"  {rf.url}{note}\n    -> save as {dest}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- fetch
def fetch(
    name: str,
    root: str | Path | None = None,
    only: Iterable[str] | None = None,
    base_urls: dict[str, str] | None = None,
    progress: bool = True,
    *,
    retries: int = 3,
    timeout: float = 30.0,
) -> FetchReport:
    """Download the public files of a data set into ``root``.

    Parameters
    ----------
    name : str
        Data set name (``neurofinder``, ``abo``).
    root : str or Path, optional
        Data root (default :func:`datasets.registry.data_root`).
    only : iterable of str, optional
        Recording ids to fetch (``01.00``, ``01.00.test``, ``524691284``) or
        ``markings`` (the marking files only); default all.
    base_urls : dict, optional
        Source base URLs by key (``neurofinder``, ``abo``, ``stneuronet``).
    progress : bool
        Show a tqdm bar per file on stderr.
    retries : int
        Times a broken connection is resumed before giving up.
    timeout : float
        Socket timeout in seconds.

    Returns
    -------
    FetchReport

    Raises
    ------
    OfflineError
        A source is unreachable; the message lists the URLs and where to put them.
    InputError
        Unknown data set or id, too little disk space, a size or checksum
        mismatch (the bad ``.part`` is removed, nothing else), or an HTTP error.
    """
    root = Path(data_root() if root is None else root).expanduser()
    provider = _provider(name)
    files: list[RemoteFile] = list(
        provider.remote_files(root, only=None if only is None else list(only), base_urls=base_urls)
    )
    report = FetchReport(name, root)
    manifest = _read_manifest(root)

    todo = []
    for rf in files:
        if _in_place(rf, root, manifest):
            report.present.append(rf.dest)
        else:
            todo.append(rf)
    if not todo:
        log.info("%s: all %d file(s) already under %s", name, len(files), root)
        return report

    sizes = _probe(todo, root, timeout, report)
    todo = [rf for rf in todo if rf.dest not in report.unavailable]
    _check_disk(todo, sizes, root)

    for rf in todo:
        n = _download(rf, root, sizes.get(rf.dest), manifest, progress=progress, retries=retries, timeout=timeout)
        report.downloaded.append(rf.dest)
        report.bytes_downloaded += n
    log.info("%s", report.summary())
    return report


def _in_place(rf: RemoteFile, root: Path, manifest: dict) -> bool:
    """Whether a file (or an alternative to it) is already on disk and, as far as is known, intact."""
    for alt in rf.alternatives:
        if (root / alt).exists():
            return True
    dest = root / rf.dest
    if not dest.is_file():
        return False
    size = dest.stat().st_size
    entry = manifest["files"].get(rf.dest)
    if rf.size is not None and size != rf.size:
        raise InputError(
            f"is {size} bytes, the published file is {rf.size} bytes",
            path=dest,
            hint="it was not deleted; move it away and run the fetch again",
        )
    if rf.sha256 is not None:
        # Hash a file once; afterwards the manifest entry (same size) vouches for it.
        if entry and entry.get("sha256") == rf.sha256 and entry.get("size") == size:
            return True
        digest = sha256_of(dest)
        if digest != rf.sha256:
            raise InputError(
                f"checksum {digest[:12]}... differs from the published {rf.sha256[:12]}...",
                path=dest,
                hint="it was not deleted; move it away and run the fetch again",
            )
        _record(manifest, root, rf, size, digest)
        return True
    if entry is None:
        # Placed by hand: trust it and remember its checksum, so a later change is noticed.
        _record(manifest, root, rf, size, sha256_of(dest))
    elif entry.get("size") != size:
        raise InputError(
            f"is {size} bytes, {entry.get('size')} bytes when it was downloaded",
            path=dest,
            hint=f"it was not deleted; move it away and run the fetch again, or remove its entry from {MANIFEST}",
        )
    return True


def _record(manifest: dict, root: Path, rf: RemoteFile, size: int, digest: str) -> None:
    manifest["files"][rf.dest] = {
        "sha256": digest,
        "size": size,
        "url": rf.url,
        "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(_manifest_path(root), manifest)


def _request(url: str, method: str = "GET", headers: dict | None = None) -> urllib.request.Request:
    h = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    h.update(headers or {})
    return urllib.request.Request(url, method=method, headers=h)


def _offline(todo: list[RemoteFile], root: Path, url: str, exc: BaseException) -> OfflineError:
    reason = getattr(exc, "reason", exc)
    return OfflineError(
        f"cannot reach {url} ({reason}). Without network access, download these files on another machine "
        f"and put them in place by hand:\n{manual_instructions(todo, root)}\n"
        "then check with `python -m bench datasets`",
        hint=None,
    )


def _probe(todo: list[RemoteFile], root: Path, timeout: float, report: FetchReport) -> dict[str, int]:
    """Content-Length of every file (HEAD); unreachable hosts and missing files are reported before any write."""
    sizes: dict[str, int] = {}
    for rf in todo:
        try:
            with urllib.request.urlopen(_request(rf.url, "HEAD"), timeout=timeout) as resp:
                length = resp.headers.get("Content-Length")
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and rf.optional:
                log.warning("%s is not published by the source (404); skipped", rf.url)
                report.unavailable.append(rf.dest)
                continue
            if exc.code in (403, 405, 501):
                length = None  # HEAD refused: the size is learnt from the GET
            else:
                raise InputError(f"HTTP {exc.code} {exc.reason} for {rf.url}", path=root / rf.dest) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise _offline(todo, root, rf.url, exc) from exc
        if length is not None:
            sizes[rf.dest] = int(length)
            if rf.size is not None and int(length) != rf.size:
                raise InputError(
                    f"the source offers {length} bytes, the published file is {rf.size} bytes",
                    path=rf.url,
                    hint="the source changed; nothing was downloaded",
                )
        elif rf.size is not None:
            sizes[rf.dest] = rf.size
    return sizes


def _check_disk(todo: list[RemoteFile], sizes: dict[str, int], root: Path) -> None:
    """Refuse to start when the files still to download do not fit on the disk."""
    need = 0
    for rf in todo:
        part = (root / rf.dest).with_name(Path(rf.dest).name + ".part")
        have = part.stat().st_size if part.is_file() else 0
        need += max(sizes.get(rf.dest, 0) - have, 0)
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    # A margin, so that a full disk never corrupts other files written meanwhile.
    margin = 256 * 1024 * 1024 if need else 0
    if need + margin > free:
        raise InputError(
            f"needs {format_bytes(need)} of free space, {format_bytes(free)} free",
            path=root,
            hint="free some space or point BENCH_DATA at a larger disk; nothing was downloaded",
        )


def _download(
    rf: RemoteFile, root: Path, total: int | None, manifest: dict, *, progress: bool, retries: int, timeout: float
) -> int:
    """Download one file through its ``.part`` with resume; verify; rename into place. Returns bytes transferred."""
    from tqdm import tqdm

    dest = root / rf.dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    transferred = 0
    expected_sha = rf.sha256 or (manifest["files"].get(rf.dest) or {}).get("sha256")
    for attempt in range(retries + 1):
        have = part.stat().st_size if part.is_file() else 0
        if total is not None and have > total:
            part.unlink()  # longer than the file: not a prefix of it
            have = 0
        if total is not None and have == total:
            break
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with urllib.request.urlopen(_request(rf.url, headers=headers), timeout=timeout) as resp:
                if have and resp.status != 206:
                    have = 0  # the server ignored the Range header: start over
                if total is None:
                    length = resp.headers.get("Content-Length")
                    total = have + int(length) if length is not None else None
                with (
                    open(part, "ab" if have else "wb") as out,
                    tqdm(
                        total=total,
                        initial=have,
                        unit="B",
                        unit_scale=True,
                        desc=Path(rf.dest).name,
                        disable=not progress,
                        leave=False,
                    ) as bar,
                ):
                    while True:
                        block = resp.read(_CHUNK)
                        if not block:
                            break
                        out.write(block)
                        transferred += len(block)
                        bar.update(len(block))
            got = part.stat().st_size
            if total is not None and got < total:
                raise http.client.IncompleteRead(b"", total - got)
            break
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have and total is not None and have == total:
                break
            if exc.code == 404 and rf.optional:
                raise InputError(f"not published by the source: {rf.url}", path=dest) from exc
            raise InputError(
                f"HTTP {exc.code} {exc.reason} for {rf.url}",
                path=dest,
                hint="run the same command again to resume; the partial download is kept",
            ) from exc
        except _TRANSIENT + (urllib.error.URLError,) as exc:
            if attempt == retries:
                raise InputError(
                    f"download of {rf.url} interrupted ({type(exc).__name__}: {exc})",
                    path=part,
                    hint="run the same command again to resume from where it stopped",
                ) from exc
            log.warning("%s: connection broken (%s); resuming (attempt %d)", rf.url, exc, attempt + 2)
            time.sleep(min(0.2 * 2**attempt, 5.0))

    size = part.stat().st_size
    if total is not None and size != total:
        part.unlink()
        raise InputError(f"downloaded {size} bytes, expected {total}", path=dest, hint="run the same command again")
    digest = sha256_of(part)
    if expected_sha is not None and digest != expected_sha:
        part.unlink()
        raise InputError(
            f"checksum mismatch for {rf.url}: got {digest}, expected {expected_sha}",
            path=dest,
            hint="the damaged download was removed and nothing else was deleted; run the fetch again, "
            "and if it fails again the source has changed",
        )
    os.replace(part, dest)
    _record(manifest, root, rf, size, digest)
    log.info("fetched %s (%s)", dest, format_bytes(size))
    return transferred
