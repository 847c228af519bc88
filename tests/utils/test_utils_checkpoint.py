"""The one safe checkpoint reader (shufflenet_det.utils.checkpoint) and the loading policy it installs."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import shufflenet_det  # noqa: F401  (installs the policy)
from shufflenet_det.utils import checkpoint as ckpt
from shufflenet_det.utils.checkpoint import CheckpointError

pytestmark = pytest.mark.compat  # also run on the OpenMMLab-standard stack (make test-openmmlab)


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # pragma: no cover - must never run when loaded
        return (Path.touch, (Path(self.marker),))


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


def test_state_dict_forms(tmp_path: Path) -> None:
    net = _net()
    sd = net.state_dict()
    for i, obj in enumerate([sd, {'state_dict': sd, 'meta': {'x': 1}}, {'model': sd},
                             {'state_dict': {f'module.{k}': v for k, v in sd.items()}}]):
        path = tmp_path / f'{i}.pth'
        torch.save(obj, path)
        got = ckpt.read_state_dict(path)
        assert list(got) == list(sd) and all(torch.equal(got[k], sd[k]) for k in sd)
    det = {f'backbone.{k}': v for k, v in sd.items()} | {'neck.w': torch.zeros(1)}
    torch.save({'state_dict': det}, tmp_path / 'det.pth')
    assert list(ckpt.read_state_dict(tmp_path / 'det.pth', prefix='backbone.')) == list(sd)
    fresh = _net()
    ckpt.load_weights(fresh, tmp_path / 'det.pth', prefix='backbone.')
    assert torch.equal(fresh[0].weight, net[0].weight)


@pytest.mark.parametrize('content, message', [
    (None, 'does not exist'),
    (b'', 'empty'),
    (b'not a checkpoint at all\n', 'not a readable PyTorch checkpoint'),
    (b'PK\x03\x04truncated', 'not a readable PyTorch checkpoint'),
])
def test_unreadable_files_are_named(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / 'bad.pth'
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as info:
        ckpt.read_checkpoint(path)
    assert 'bad.pth' in str(info.value)


def test_truncated_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / 'trunc.pth'
    torch.save(_net().state_dict(), path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match='trunc.pth'):
        ckpt.read_state_dict(path)


def test_non_state_dicts_are_refused(tmp_path: Path) -> None:
    torch.save({'state_dict': {'a': [1, 2]}}, tmp_path / 'lists.pth')
    with pytest.raises(CheckpointError, match='not tensors'):
        ckpt.read_state_dict(tmp_path / 'lists.pth')
    torch.save(torch.zeros(2), tmp_path / 'tensor.pth')
    with pytest.raises(CheckpointError, match='holds no state dict'):
        ckpt.read_state_dict(tmp_path / 'tensor.pth')


def test_weights_of_another_model_are_an_error(tmp_path: Path) -> None:
    torch.save(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)).state_dict(), tmp_path / 'wide.pth')
    with pytest.raises(CheckpointError, match='shape mismatches') as info:
        ckpt.load_weights(_net(), tmp_path / 'wide.pth')
    assert 'wide.pth' in str(info.value) and '0.weight' in str(info.value)
    torch.save({'0.weight': torch.zeros(4, 3, 3, 3)}, tmp_path / 'part.pth')
    with pytest.raises(CheckpointError, match='missing keys'):
        ckpt.load_weights(_net(), tmp_path / 'part.pth')
    ckpt.load_weights(_net(), tmp_path / 'part.pth', strict=False)  # an explicit partial load is allowed


@pytest.mark.slow
def test_pickled_code_never_runs_even_when_the_environment_asks(tmp_path: Path) -> None:
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (which torch's own error message suggests) cannot switch the policy off:
    the reader, mmengine's load_checkpoint and a Runner's load_from all refuse the payload."""
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': _net().state_dict(), 'payload': _Payload(str(marker))}, evil)
    code = f'''
import pickle, sys
import torch
import shufflenet_det
from shufflenet_det.utils.checkpoint import CheckpointError, read_checkpoint
from mmengine.runner import load_checkpoint
try:
    read_checkpoint({str(evil)!r})
    sys.exit('read_checkpoint loaded the payload')
except CheckpointError as exc:
    assert 'refused by the safe loader' in str(exc), exc
try:
    load_checkpoint(torch.nn.Linear(1, 1), {str(evil)!r}, map_location='cpu')
    sys.exit('load_checkpoint loaded the payload')
except pickle.UnpicklingError:
    pass
print('refused')
'''
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1')
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert 'refused' in out.stdout
    assert not marker.exists()


def test_restricted_unpickler_reads_runner_state_and_refuses_the_rest(tmp_path: Path) -> None:
    """The older-torch path (no add_safe_globals): torch.load through the restricted pickle module."""
    import numpy as np
    from mmengine.logging import HistoryBuffer
    buf = HistoryBuffer()
    buf.update(1.5)
    good = tmp_path / 'runner.pth'
    torch.save({'state_dict': _net().state_dict(), 'message_hub': {'buf': buf},
                'meta': {'seed': np.int64(3), 'arr': np.arange(3)}}, good)
    obj = torch.load(str(good), map_location='cpu', pickle_module=ckpt.restricted_pickle_module)
    assert obj['message_hub']['buf'].current() == 1.5 and int(obj['meta']['seed']) == 3
    evil = tmp_path / 'evil.pth'
    torch.save({'payload': _Payload(str(tmp_path / 'pwned'))}, evil)
    with pytest.raises(pickle.UnpicklingError, match='refusing global'):
        torch.load(str(evil), map_location='cpu', pickle_module=ckpt.restricted_pickle_module)
    assert not (tmp_path / 'pwned').exists()


def test_mmengine_loader_is_the_safe_reader() -> None:
    from mmengine.runner.checkpoint import CheckpointLoader
    assert getattr(CheckpointLoader._schemes[''], '_shufflenet_det_safe', False)
