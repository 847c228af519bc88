"""tools/dist_train.sh / dist_test.sh: two processes on CPU (gloo) train, evaluate and test a mini config."""
from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tiny_mini_coco import REPO, make_dataset, write_config

pytestmark = pytest.mark.slow  # tool runs, exports, training: make test-fast leaves these out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_script(args: list[str], timeout: float = 420) -> str:
    # PYTHONFAULTHANDLER: a rank that aborts prints its Python stacks, so a failure says where it happened
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore',
               PYTHONFAULTHANDLER='1', PORT=str(free_port()))
    done = subprocess.run(['bash'] + args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-5000:]
    # every rank tore its process group down before exiting (tools/train.py and test.py run in distributed_session)
    assert 'terminate called' not in out and 'has NOT been destroyed' not in out, out[-5000:]
    return out


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason='this torch build has no gloo backend')
@pytest.mark.parametrize('base', ['retinanet', 'faster-rcnn'])
def test_dist_train_and_test_two_cpu_processes(tmp_path: Path, base: str):
    """DDP without find_unused_parameters: the backbone's unused conv5 is frozen, every other parameter is used."""
    data = make_dataset(tmp_path / 'mini')
    cfg = write_config(tmp_path / 'tiny.py', data, max_epochs=2,
                       base=REPO / 'configs' / 'mini' / f'{base}_shufflenetv2-1x_fpn_mini-coco.py')
    work = tmp_path / 'work'
    out = run_script(['tools/dist_train.sh', str(cfg), '2', '--work-dir', str(work)])
    assert re.search(r'Distributed training: True', out)
    assert re.search(r'find_unused_parameters=False', out)
    assert re.search(r'GPU number: 2|world_size: 2|World size: 2', out), out[-3000:]
    # 16 images / (2 processes x 2 images) = 4 iterations per epoch: the sampler split the data between ranks
    assert re.search(r'Epoch\(train\) +\[2\]\[4/4\]', out) and not re.search(r'\[\d+\]\[5/', out)
    assert re.search(r'Epoch\(val\) +\[2\]\[1/1\]', out)  # 4 val images / (2 processes x 2 images)
    ckpt = torch.load(work / 'epoch_2.pth', map_location='cpu', weights_only=True)
    assert ckpt['meta']['iter'] == 8

    test_out = run_script(['tools/dist_test.sh', str(cfg), str(work / 'epoch_2.pth'), '2', '--work-dir',
                           str(tmp_path / 'test')])
    assert re.search(r'Epoch\(test\) +\[1/1\]', test_out)


def test_scripts_print_usage():
    for script, n in (('tools/dist_train.sh', 2), ('tools/dist_test.sh', 3)):
        done = subprocess.run(['bash', script], cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 2 and 'usage:' in done.stderr, (script, n)


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason='this torch build has no gloo backend')
@pytest.mark.parametrize('fail', [False, True])
def test_distributed_session_destroys_the_group(monkeypatch, fail: bool):
    """The group is gone after the block, also when it raises (then without the barrier, which could hang)."""
    import torch.distributed as dist

    from shufflenet_det.apps.launch import distributed_session
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{free_port()}', rank=0, world_size=1)
    barriers = []
    real_barrier = dist.barrier
    monkeypatch.setattr(dist, 'barrier', lambda *a, **k: (barriers.append(1), real_barrier(*a, **k)))
    try:
        with pytest.raises(RuntimeError, match='boom') if fail else contextlib.nullcontext():
            with distributed_session():
                t = torch.ones(3)
                dist.all_reduce(t)
                if fail:
                    raise RuntimeError('boom')
        assert not dist.is_initialized()
        assert barriers == ([] if fail else [1])
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
