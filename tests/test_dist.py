"""tools/dist_train.sh / dist_test.sh: two processes on CPU (gloo) train, evaluate and test a mini config."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tiny_mini_coco import REPO, make_dataset, write_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_script(args: list[str], timeout: float = 420) -> str:
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore',
               PORT=str(free_port()))
    done = subprocess.run(['bash'] + args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-5000:]
    return out


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason='this torch build has no gloo backend')
def test_dist_train_and_test_two_cpu_processes(tmp_path: Path):
    data = make_dataset(tmp_path / 'mini')
    cfg = write_config(tmp_path / 'tiny.py', data, max_epochs=2)
    work = tmp_path / 'work'
    out = run_script(['tools/dist_train.sh', str(cfg), '2', '--work-dir', str(work)])
    assert re.search(r'Distributed training: True', out)
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
