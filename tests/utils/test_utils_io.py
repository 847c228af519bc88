"""The one atomic writer (shufflenet_det.utils.io): all or nothing, no temporary file left, stale ones removed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from shufflenet_det.utils import io

pytestmark = pytest.mark.compat  # also run on the OpenMMLab-standard stack (make test-openmmlab)


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_single_file_writers_replace_atomically(tmp_path: Path) -> None:
    target = tmp_path / 'sub' / 'out.json'
    io.write_json_atomic({'a': 1}, target)
    assert json.loads(target.read_text()) == {'a': 1}
    assert target.read_text().endswith('\n')
    io.write_text_atomic('hello', target)
    assert target.read_text() == 'hello'
    io.write_bytes_atomic(b'\x00\x01', target)
    assert target.read_bytes() == b'\x00\x01'
    assert _listing(target.parent) == ['out.json']
    mode = target.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # the permissions of a normally created file, not mkstemp's 0600


def test_torch_writer_round_trips(tmp_path: Path) -> None:
    import torch
    path = io.save_torch_atomic({'w': torch.arange(3)}, tmp_path / 'w.pth')
    assert torch.equal(torch.load(path, weights_only=True)['w'], torch.arange(3))


def test_failure_leaves_the_old_files_and_no_temporaries(tmp_path: Path) -> None:
    a, b = tmp_path / 'a.param', tmp_path / 'a.bin'
    a.write_text('old a')
    with pytest.raises(KeyboardInterrupt):
        with io.atomic_outputs([a, b]) as (ta, tb):
            ta.write_text('new a')
            tb.write_text('new b')
            raise KeyboardInterrupt
    assert a.read_text() == 'old a' and not b.exists()
    assert _listing(tmp_path) == ['a.param']


def test_every_output_must_be_written(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match='did not write'):
        with io.atomic_outputs([tmp_path / 'x', tmp_path / 'y']) as (tx, ty):
            tx.write_text('x')
            ty.unlink()
    assert _listing(tmp_path) == []


def test_bad_destinations_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match='distinct'):
        with io.atomic_outputs([tmp_path / 'x', tmp_path / 'x']):
            pass
    (tmp_path / 'folder').mkdir()
    with pytest.raises(ValueError, match="'.*folder' is a folder"):
        io.write_text_atomic('x', tmp_path / 'folder')
    blocker = tmp_path / 'file'
    blocker.write_text('')
    with pytest.raises(ValueError, match='cannot create folder'):
        io.write_text_atomic('x', blocker / 'inside' / 'out.txt', what='report')


def test_read_only_folder_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ro = tmp_path / 'ro'
    ro.mkdir()
    real_access = os.access
    # root passes every permission check, so the read-only folder is simulated where the writer asks
    monkeypatch.setattr(os, 'access', lambda p, mode: False if Path(p) == ro else real_access(p, mode))
    with pytest.raises(ValueError, match="report '.*out.txt': folder '.*ro' is not writable"):
        io.write_text_atomic('x', ro / 'out.txt', what='report')
    assert _listing(ro) == []


def _writer_stopped_mid_write(target: Path) -> subprocess.Popen:
    """A process inside ``atomic_outputs([target])`` that has written its temporary file and waits; SIGTERM makes it
    exit with 143 as the tools do (an exception unwinds the block)."""
    code = ('import signal, sys, time; from shufflenet_det.utils import io\n'
            'signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))\n'
            'with io.atomic_outputs([sys.argv[1]]) as (t,):\n'
            '    t.write_text("partial"); print("ready", flush=True); time.sleep(60)\n')
    proc = subprocess.Popen([sys.executable, '-c', code, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == 'ready'
    return proc


@pytest.mark.slow
def test_stale_temporaries_of_killed_writers_are_removed(tmp_path: Path) -> None:
    """A writer killed with SIGKILL leaves its temporary file; the next write into that folder removes it."""
    proc = _writer_stopped_mid_write(tmp_path / 'ckpt.pth')
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith('.tmp')]
    assert len(leftovers) == 1 and not (tmp_path / 'ckpt.pth').exists()
    # a live writer's temporary file is never touched
    live = tmp_path / f'.other.{os.getpid()}.abc123.tmp'
    live.write_text('in progress')
    io.write_text_atomic('done', tmp_path / 'next.txt')
    assert _listing(tmp_path) == sorted(['next.txt', live.name])


@pytest.mark.slow
def test_sigterm_during_a_write_leaves_nothing(tmp_path: Path) -> None:
    proc = _writer_stopped_mid_write(tmp_path / 'model.onnx')
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    assert _listing(tmp_path) == []


def test_atomic_directory(tmp_path: Path) -> None:
    root = tmp_path / 'data'
    with io.atomic_directory(root) as tmp:
        (tmp / 'a.txt').write_text('1')
    assert _listing(root) == ['a.txt']
    with pytest.raises(FileExistsError, match='already exists'):
        with io.atomic_directory(root):
            pass
    with pytest.raises(RuntimeError):
        with io.atomic_directory(root, overwrite=True) as tmp:
            (tmp / 'b.txt').write_text('2')
            raise RuntimeError('generation failed')
    assert _listing(root) == ['a.txt']  # untouched
    with io.atomic_directory(root, overwrite=True) as tmp:
        (tmp / 'b.txt').write_text('2')
    assert _listing(root) == ['b.txt']
    assert _listing(tmp_path) == ['data']
    user_file = tmp_path / 'notes.txt'
    user_file.write_text('mine')
    with pytest.raises(FileExistsError, match='not a folder'):
        with io.atomic_directory(user_file, overwrite=True):
            pass
    assert user_file.read_text() == 'mine'
