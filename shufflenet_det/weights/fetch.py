"""Downloading one file into the cache: streamed, hashed, size-checked, written atomically, one process at a time.

* :func:`download` streams ``url`` into a temporary sibling of the destination
  (:func:`shufflenet_det.utils.io.atomic_outputs`), hashing it as it goes; a connection error, an HTTP error, a body
  shorter than its ``Content-Length`` or a hash that differs from the expected one raises :class:`DownloadError`
  and leaves nothing behind. Timeouts apply to connecting and to every read (:data:`TIMEOUT_ENV`).
* :func:`cache_lock` serialises the processes that fill the same cache entry (the ranks of a distributed job): the
  first takes an exclusive ``fcntl`` lock and downloads, the others wait for it and then find the file in place.
  The lock dies with its process, so a killed download never blocks the next one.
* Progress goes to stderr: tqdm's bar where tqdm is installed, else a line per 10 %.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Optional

from ..utils.checkpoint import CheckpointError
from ..utils.io import atomic_outputs

TIMEOUT_ENV = 'SHUFFLENET_DET_WEIGHTS_TIMEOUT'
DEFAULT_TIMEOUT = 60.0
CHUNK = 1 << 16


class DownloadError(CheckpointError):
    """A file could not be fetched, or what arrived is not the published file."""


def hash_matches(actual: str, expected: Optional[str]) -> bool:
    """Whether the SHA-256 ``actual`` fits ``expected`` (a full hash or a prefix; None: nothing to check)."""
    return expected is None or actual.startswith(expected.lower())


def _timeout() -> float:
    text = os.environ.get(TIMEOUT_ENV)
    try:
        return float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        raise ValueError(f'{TIMEOUT_ENV}={text!r} is not a number of seconds') from None


class _Progress:
    """tqdm's bar when available, else a line to stderr every 10 %."""

    def __init__(self, total: Optional[int], label: str, enabled: bool) -> None:
        self.total, self.label, self.done, self.shown = total, label, 0, -1
        self.bar: Any = None
        if not enabled:
            self.update: Callable[[int], None] = lambda n: None
            return
        try:
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit='B', unit_scale=True, unit_divisor=1024, desc=label, file=sys.stderr)
            self.update = self.bar.update
        except ImportError:
            print(f'downloading {label}' + (f' ({total / 1e6:.1f} MB)' if total else ''), file=sys.stderr)
            self.update = self._line

    def _line(self, n: int) -> None:
        self.done += n
        if self.total:
            tenth = 10 * self.done // self.total
            if tenth > self.shown:
                self.shown = tenth
                print(f'  {self.label}: {10 * tenth}% ({self.done / 1e6:.1f} MB)', file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _copy(response: IO[bytes], out: IO[bytes], digest: Any, progress: _Progress) -> int:
    received = 0
    while True:
        try:
            block = response.read(CHUNK)
        except http.client.IncompleteRead as exc:
            raise DownloadError(f'truncated download: the connection closed after '
                                f'{received + len(exc.partial)} bytes') from exc
        if not block:
            return received
        out.write(block)
        digest.update(block)
        received += len(block)
        progress.update(len(block))


def download(url: str, dest: str | os.PathLike, expected_hash: Optional[str], what: str,
             progress: bool = True) -> str:
    """Fetch ``url`` into ``dest`` atomically; return the file's SHA-256. :class:`DownloadError` (nothing written)
    when it cannot be fetched, arrives truncated, or its hash does not start with ``expected_hash``."""
    dest = Path(dest)
    request = urllib.request.Request(url, headers={'User-Agent': 'shufflenet_det'})
    digest = hashlib.sha256()
    try:
        with atomic_outputs([dest], what) as (tmp,), \
                urllib.request.urlopen(request, timeout=_timeout()) as response, open(tmp, 'wb') as out:
            length = response.headers.get('Content-Length')
            total = int(length) if length and length.isdigit() else None
            bar = _Progress(total, dest.name, progress)
            try:
                received = _copy(response, out, digest, bar)
            finally:
                bar.close()
            if total is not None and received != total:
                raise DownloadError(f'truncated download: {received} of {total} bytes arrived')
            actual = digest.hexdigest()
            if not hash_matches(actual, expected_hash):
                raise DownloadError(f'hash mismatch: the file has SHA-256 {actual}, the publisher\'s starts with '
                                    f'{expected_hash} (a damaged download, or another file at that URL)')
    except urllib.error.HTTPError as exc:
        raise DownloadError(f'HTTP {exc.code} {exc.reason}') from exc
    except urllib.error.URLError as exc:
        raise DownloadError(f'no connection ({exc.reason})') from exc
    except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise DownloadError(f'{type(exc).__name__}: {exc}') from exc
    return actual


@contextlib.contextmanager
def cache_lock(path: str | os.PathLike, notice: Optional[Callable[[], None]] = None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed; its folder too) for the block; ``notice`` is called
    once when another process holds it and this one starts waiting."""
    lock = Path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # no fcntl (Windows): the atomic renames still keep the cache consistent
        yield
        return
    with open(lock, 'a+b') as handle:
        waited = False
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited and notice is not None:
                    notice()
                waited = True
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
