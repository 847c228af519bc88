"""All-or-nothing writing of export artefacts.

An export produces one or several files (``.onnx``; ``.param`` + ``.bin`` + ``.json`` for ncnn). They are first
written to hidden temporary files in the destination folder and renamed into place only once every one of them has
been written and checked, so a failed or interrupted export leaves no partial model behind.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence


def check_writable_dir(path: str | os.PathLike, what: str = 'output') -> Path:
    """Create the parent folder of ``path`` if needed and check it is writable; ValueError otherwise."""
    parent = Path(path).expanduser().resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f'{what} {str(path)!r}: cannot create folder {str(parent)!r}: {exc}') from exc
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f'{what} {str(path)!r}: folder {str(parent)!r} is not writable')
    return parent


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_outputs(paths: Sequence[str | os.PathLike]) -> Iterator[list[Path]]:
    """Yield one temporary path per final path; rename them all into place when the block succeeds.

    On any exception every temporary file is removed and the final paths are left untouched.
    """
    finals = [Path(p).expanduser().resolve() for p in paths]
    if len(set(finals)) != len(finals):
        raise ValueError(f'output paths must be distinct, got {[str(p) for p in finals]}')
    temps: list[Path] = []
    try:
        for final in finals:
            parent = check_writable_dir(final)
            try:
                fd, tmp = tempfile.mkstemp(prefix=f'.{final.name}.', suffix='.tmp', dir=parent)
            except OSError as exc:
                raise ValueError(f'output {str(final)!r}: cannot write into {str(parent)!r}: {exc}') from exc
            os.close(fd)
            temps.append(Path(tmp))
        yield list(temps)
        for tmp in temps:
            if not tmp.is_file():
                raise RuntimeError(f'export step did not write {tmp}')
        mode = 0o666 & ~_umask()
        for tmp, final in zip(temps, finals):
            os.chmod(tmp, mode)  # mkstemp creates 0600 files; give the usual permissions
            os.replace(tmp, final)
    finally:
        for tmp in temps:
            if tmp.exists():
                tmp.unlink()


def write_json_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON through a temporary file renamed into place."""
    with atomic_outputs([path]) as (tmp,):
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + '\n')
    return Path(path)
