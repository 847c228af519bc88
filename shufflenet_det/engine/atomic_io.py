"""Atomic local file writes, and an mmengine file backend that uses them.

mmengine's ``LocalBackend.put`` opens the final path and writes into it: a process killed mid-write (SIGKILL, OOM,
a pre-empted job) leaves a truncated checkpoint that ``--resume`` then fails to load. :func:`write_atomic` writes a
temporary file in the same folder, flushes it to disk and renames it over the target (``os.replace`` is atomic on
POSIX and Windows), so readers see either the old file or the complete new one, never a partial one.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Union

from mmengine.fileio import LocalBackend, register_backend

ATOMIC_BACKEND = 'atomic_local'


def write_atomic(data: bytes, path: Union[str, Path]) -> None:
    """Write ``data`` to ``path`` through a temporary sibling file renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class AtomicLocalBackend(LocalBackend):
    """``LocalBackend`` whose ``put``/``put_text`` are atomic (see :func:`write_atomic`)."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        write_atomic(obj, filepath)

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8') -> None:
        write_atomic(obj.encode(encoding), filepath)


register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)
