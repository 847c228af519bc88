"""File output of the package: the one atomic writer, and the helpers that need more than the standard library.

The atomic writer (temporary sibling, ``fsync``, rename; stale temporaries of killed writers removed) is
:mod:`shufflenet_det.runtime.io`, part of the torch-free runtime that also runs on boards; it is re-exported here
(:func:`atomic_outputs`, :func:`atomic_directory`, :func:`write_bytes_atomic`, :func:`write_text_atomic`,
:func:`write_json_atomic`, :func:`check_writable_dir`, :func:`same_file`, :func:`remove_stale_temps`).
:func:`save_torch_atomic` writes a ``torch.save`` file through it; :func:`file_sha256` hashes a file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..runtime.io import (
                          PathLike,
                          atomic_directory,
                          atomic_outputs,
                          check_writable_dir,
                          remove_stale_temps,
                          same_file,
                          write_bytes_atomic,
                          write_json_atomic,
                          write_text_atomic,
)

__all__ = ['PathLike', 'atomic_directory', 'atomic_outputs', 'check_writable_dir', 'file_sha256',
           'remove_stale_temps', 'same_file', 'save_torch_atomic', 'write_bytes_atomic', 'write_json_atomic',
           'write_text_atomic']


def file_sha256(path: PathLike) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    import hashlib
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def save_torch_atomic(obj: Any, path: PathLike, what: str = 'checkpoint') -> Path:
    """``torch.save(obj)`` to ``path`` atomically; return the path."""
    import torch
    with atomic_outputs([path], what) as (tmp,):
        torch.save(obj, tmp)
    return Path(path)
