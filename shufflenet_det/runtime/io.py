"""All-or-nothing file output: the one atomic writer of the project (standard library only).

Every file this project writes (checkpoints, converted weights, exports, reports, datasets, pictures, the board
runners' outputs) goes through :func:`atomic_outputs` (or the one-file helpers built on it): each final path gets a
hidden temporary sibling ``.<name>.<pid>.<random>.tmp`` in the destination folder; the caller writes there; when the
block succeeds every temporary file is flushed to disk (``fsync``), given the permissions of a normally created file
and renamed over its final path (``os.replace``, atomic on POSIX and Windows). On any exception,
``KeyboardInterrupt``, ``SystemExit`` and the runtime's :class:`.errors.Interrupted` included, the temporary files are
removed and the final paths are left as they were. A writer killed outright (SIGKILL, OOM) cannot clean up: the next
write to the same folder removes the temporary files whose writer process is gone (:func:`remove_stale_temps`).

Folders (the mini dataset) are written the same way by :func:`atomic_directory`. It lives in the torch-free runtime
so that a board writes its results the same way; ``shufflenet_det.utils.io`` re-exports it for the rest of the
package.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

PathLike = str | os.PathLike

#: ``.<final name>.<writer pid>.<random>.tmp`` (files) / ``...tmpdir`` (folders).
_TEMP_RE = re.compile(r'^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp(dir)?$')


def check_writable_dir(path: PathLike, what: str = 'output') -> Path:
    """Create the parent folder of ``path`` if needed and check it is writable; ValueError naming ``what`` if not."""
    parent = Path(path).expanduser().resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f'{what} {str(path)!r}: cannot create folder {str(parent)!r}: {exc.strerror or exc}') from exc
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f'{what} {str(path)!r}: folder {str(parent)!r} is not writable')
    return parent


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether two paths name the same file: the same resolved path (``./x``, ``a/../x``, symlinks) or, when both
    exist, the same inode (hard links, bind mounts)."""
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.resolve() == pb.resolve():
        return True
    try:
        return pa.exists() and pb.exists() and os.path.samefile(pa, pb)
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temps(folder: PathLike) -> list[Path]:
    """Remove temporary files and folders of this module in ``folder`` whose writer process no longer exists."""
    removed: list[Path] = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_RE.match(entry.name)
        if match is None or _pid_alive(int(match['pid'])):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            continue  # another process cleaned it first, or it is not ours to remove
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_outputs(paths: Sequence[PathLike], what: str = 'output') -> Iterator[list[Path]]:
    """Yield one temporary path per final path; rename them all into place when the block succeeds.

    The caller must write every temporary path (RuntimeError otherwise). On any exception every temporary file is
    removed and the final paths are left untouched. ``what`` names the files in error messages.
    """
    finals = [Path(p).expanduser().resolve() for p in paths]
    if len(set(finals)) != len(finals):
        raise ValueError(f'{what} paths must be distinct, got {[str(p) for p in finals]}')
    for final in finals:
        if final.is_dir():
            raise ValueError(f'{what} {str(final)!r} is a folder, not a file')
    temps: list[Path] = []
    try:
        for final in finals:
            parent = check_writable_dir(final, what)
            remove_stale_temps(parent)
            try:
                fd, name = tempfile.mkstemp(prefix=f'.{final.name}.{os.getpid()}.', suffix='.tmp', dir=parent)
            except OSError as exc:
                raise ValueError(f'{what} {str(final)!r}: cannot write into {str(parent)!r}: '
                                 f'{exc.strerror or exc}') from exc
            os.close(fd)
            temps.append(Path(name))
        yield list(temps)
        for tmp in temps:
            if not tmp.is_file():
                raise RuntimeError(f'the {what} step did not write {tmp}')
        mode = 0o666 & ~_umask()
        for tmp in temps:
            os.chmod(tmp, mode)  # mkstemp creates 0600 files; give the usual permissions
            _fsync(tmp)
        for tmp, final in zip(temps, finals):
            os.replace(tmp, final)
    finally:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def write_bytes_atomic(data: bytes, path: PathLike, what: str = 'output') -> Path:
    """Write ``data`` to ``path`` atomically; return the path."""
    with atomic_outputs([path], what) as (tmp,):
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(text: str, path: PathLike, what: str = 'output', encoding: str = 'utf-8') -> Path:
    """Write ``text`` to ``path`` atomically; return the path."""
    return write_bytes_atomic(text.encode(encoding), path, what)


def write_json_atomic(obj: Any, path: PathLike, what: str = 'output') -> Path:
    """Write ``obj`` as indented JSON (trailing newline) atomically; return the path."""
    return write_text_atomic(json.dumps(obj, indent=2) + '\n', path, what)


@contextlib.contextmanager
def atomic_directory(path: PathLike, overwrite: bool = False, what: str = 'output folder') -> Iterator[Path]:
    """Yield an empty temporary folder that replaces ``path`` when the block succeeds.

    ``path`` must not exist unless ``overwrite`` (FileExistsError naming it); an existing folder is swapped out and
    removed only after the new one is in place, and restored if the swap fails. On any exception the temporary
    folder is removed and ``path`` is left as it was.
    """
    final = Path(path).expanduser().resolve()
    if final.exists() and not overwrite:
        raise FileExistsError(f'{what} {str(path)!r} already exists; pass overwrite=True (--overwrite) to replace it')
    if final.exists() and not final.is_dir():
        raise FileExistsError(f'{what} {str(path)!r} exists and is not a folder: refusing to replace a file')
    parent = check_writable_dir(final, what)
    remove_stale_temps(parent)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{final.name}.{os.getpid()}.', suffix='.tmpdir', dir=parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if not final.exists():
            os.rename(tmp, final)
            return
        old = Path(tempfile.mkdtemp(prefix=f'.{final.name}.{os.getpid()}.', suffix='.tmpdir', dir=parent))
        os.rmdir(old)
        os.rename(final, old)
        try:
            os.rename(tmp, final)
        except BaseException:
            os.rename(old, final)
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
