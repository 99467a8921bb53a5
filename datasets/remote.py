"""Where the public data live: base URLs (overridable) and the files a data set can download.

Every URL is built from a base in :data:`BASE_URLS`, overridable per call
(``base_urls={key: url}``), by ``python -m bench fetch NAME --base-url KEY=URL``, or
by environment variable ``$BENCH_URL_<KEY>``, so tests and mirrors can point
the suite elsewhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["STNEURONET_COMMIT", "BASE_URLS", "base_url", "RemoteFile", "fetch_command"]

#: The commit of soltanianzadeh/STNeuroNet whose ``Markings`` folder the checksums below describe.
#: URLs name the commit, not a branch, so a later push can never change what a checksum refers to.
STNEURONET_COMMIT = "6537096d8b2c05858320703418e2a3e2897be928"

#: Default base URL of each public source; override with ``base_urls={key: url}`` or ``$BENCH_URL_<KEY>``.
BASE_URLS = {
    # The Neurofinder challenge's public S3 bucket (training and test zips side by side).
    "neurofinder": "https://s3.amazonaws.com/neuro.datasets/challenges/neurofinder",
    # Allen Brain Observatory motion-corrected movies (/data, (T, 512, 512) uint16), the files
    # prepareAllen.m reads; each is ~50-60 GB.
    "abo": "https://allen-brain-observatory.s3.amazonaws.com/visual-coding-2p/ophys_movies",
    # Raw files of the STNeuroNet repository at the pinned commit.
    "stneuronet": f"https://raw.githubusercontent.com/soltanianzadeh/STNeuroNet/{STNEURONET_COMMIT}",
}


def base_url(key: str, base_urls: dict[str, str] | None = None) -> str:
    """The base URL of a source: ``base_urls[key]``, else ``$BENCH_URL_<KEY>``, else the public default."""
    if base_urls and key in base_urls:
        return base_urls[key].rstrip("/")
    env = os.environ.get(f"BENCH_URL_{key.upper()}")
    if env:
        return env.rstrip("/")
    return BASE_URLS[key]


@dataclass(frozen=True)
class RemoteFile:
    """One file a data set can download.

    Attributes
    ----------
    url : str
        Where to get it.
    dest : str
        Path relative to the data root (POSIX separators).
    recording : str
        The recording it belongs to (what ``fetch --only`` selects).
    size : int or None
        Expected size in bytes, when known in advance.
    sha256 : str or None
        Expected SHA-256, when known in advance (otherwise the first
        successful download's checksum is recorded and verified later).
    optional : bool
        A file that the public source may not serve (listed in a repository
        tree but not published): a 404 is reported, not an error.
    alternatives : tuple of str
        Paths relative to the data root whose presence makes the download
        unnecessary (e.g. the extracted folder of a zip).
    """

    url: str
    dest: str
    recording: str
    size: int | None = None
    sha256: str | None = None
    optional: bool = False
    alternatives: tuple[str, ...] = ()


def fetch_command(dataset: str, ids) -> str:
    """The exact command that downloads the given recordings."""
    ids = list(ids)
    return f"python -m bench fetch {dataset}" + (f" --only {' '.join(ids)}" if ids else "")
