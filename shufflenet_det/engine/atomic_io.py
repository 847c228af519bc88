"""An mmengine file backend whose local writes are atomic.

mmengine's ``LocalBackend.put`` opens the final path and writes into it: a process killed mid-write (SIGKILL, OOM,
a pre-empted job) leaves a truncated checkpoint that ``--resume`` then fails to load. :class:`AtomicLocalBackend`
writes through :func:`shufflenet_det.utils.io.write_bytes_atomic` instead (temporary sibling, ``fsync``, rename), so
readers see either the old file or the complete new one, never a partial one. It is registered as
:data:`ATOMIC_BACKEND`; :class:`~shufflenet_det.engine.checkpoint_hook.AtomicCheckpointHook` selects it.
"""
from __future__ import annotations

from pathlib import Path

from mmengine.fileio import LocalBackend, register_backend

from ..utils.io import write_bytes_atomic, write_text_atomic

#: The name the backend is registered under in mmengine's file backends.
ATOMIC_BACKEND = 'atomic_local'


class AtomicLocalBackend(LocalBackend):
    """``LocalBackend`` whose ``put``/``put_text`` are atomic (see :mod:`shufflenet_det.utils.io`)."""

    def put(self, obj: bytes, filepath: str | Path) -> None:
        """Write ``obj`` to ``filepath`` atomically."""
        write_bytes_atomic(obj, filepath, what='file')

    def put_text(self, obj: str, filepath: str | Path, encoding: str = 'utf-8') -> None:
        """Write the text ``obj`` to ``filepath`` atomically."""
        write_text_atomic(obj, filepath, what='file', encoding=encoding)


register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)
