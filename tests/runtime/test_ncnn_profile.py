"""The ncnn layer profile (shufflenet_det/runtime/ncnn_profile.py, ``python -m shufflenet_det.runtime ncnn-profile``,
tools/analysis_tools/ncnn_profile.py): each layer timed as a network of its own, the kinds, the multiply-adds, the
comparison with a peer, torch-free, and the bad inputs.

The model is written here by hand (a .param text and its .bin): its layers, blobs and multiply-adds are known.
Times are only checked for what holds on any CPU (positive, consistent sums), never for a value.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import ncnn  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import numpy as np
import pytest

from helpers import load_script
from shufflenet_det.runtime.cli import main as runtime_main
from shufflenet_det.runtime.errors import run_main
from shufflenet_det.runtime.ncnn_profile import (
    KINDS,
    NcnnProfile,
    _inplace,
    ncnn_floor,
    ncnn_kind,
    profile_ncnn,
)

#: Input 3x16x16 -> 3x3 conv (16, bias) -> ReLU (in place) -> Slice 8 + 8 -> depthwise 3x3 on the second half ->
#: Concat -> ShuffleChannel (2 groups) -> 1x1 conv (8, bias).
PARAM = '''7767517
8 9
Input            in0      0 1 in0 0=16 1=16 2=3
Convolution      conv0    1 1 in0 c0 0=16 1=3 4=1 5=1 6=432
ReLU             relu0    1 1 c0 r0
Slice            slice0   1 2 r0 s0 s1 -23300=2,-233,-233
ConvolutionDepthWise dw0  1 1 s1 d0 0=8 1=3 4=1 5=1 6=72 7=8
Concat           cat0     2 1 s0 d0 cat
ShuffleChannel   shuffle0 1 1 cat sh 0=2
Convolution      conv1    1 1 sh out0 0=8 1=1 5=1 6=128
'''
MACS = dict(conv0=432 * 16 * 16, dw0=72 * 16 * 16, conv1=128 * 16 * 16)
QUICK = ['--runs', '4', '--warmup', '1', '--rounds', '2']


def _write_model(folder: Path, name: str = 'hand', param: str = PARAM) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)

    def tagged(count: int) -> bytes:  # ModelBin::load(w, 0): flag 0 then raw float32
        return np.uint32(0).tobytes() + rng.standard_normal(count).astype(np.float32).tobytes()

    def raw(count: int) -> bytes:
        return rng.standard_normal(count).astype(np.float32).tobytes()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f'{name}.param').write_text(param)
    (folder / f'{name}.bin').write_bytes(tagged(432) + raw(16) + tagged(72) + raw(8) + tagged(128) + raw(8))
    return folder / f'{name}.param', folder / f'{name}.bin'


@pytest.fixture(scope='module')
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _write_model(tmp_path_factory.mktemp('ncnn_profile'))


def test_profile_layers_kinds_and_macs(model: tuple[Path, Path]) -> None:
    p = profile_ncnn(*model, None, threads=1, runs=6, warmup=2, rounds=3)
    assert p.input_shape == (3, 16, 16) and p.runs == 6
    assert [(n, t) for n, t, _ in p.layers] == [
        ('conv0', 'Convolution'), ('relu0', 'ReLU'), ('slice0', 'Slice'), ('dw0', 'ConvolutionDepthWise'),
        ('cat0', 'Concat'), ('shuffle0', 'ShuffleChannel'), ('conv1', 'Convolution')]
    assert p.macs == MACS and p.conv_macs == sum(MACS.values())
    assert p.net_ms > 0 and all(ms >= 0 for _, _, ms in p.layers) and p.coverage > 0
    assert sum(p.kind_ms(k) for k in KINDS) == pytest.approx(p.layer_ms, rel=1e-12)
    assert p.kind_ms('convolution') > 0 and p.kind_ms('data movement') > 0
    assert sum(p.by_type().values()) == pytest.approx(p.layer_ms, rel=1e-12)
    assert p.conv_gmacs == pytest.approx(p.conv_macs / (p.kind_ms('convolution') * 1e-3) / 1e9)


def test_kinds_inplace_and_floor() -> None:
    assert [ncnn_kind(t) for t in ('Convolution', 'ConvolutionDepthWise', 'Slice', 'ShuffleChannel', 'Interp',
                                   'Pooling', 'Sigmoid')] == ['convolution'] * 2 + ['data movement'] * 3 + ['other'] * 2
    assert _inplace('ReLU') and not _inplace('Convolution')
    a = NcnnProfile('a.param', (3, 8, 8), 1, 10, net_ms=10.0, layers=[('c', 'Convolution', 6.0), ('s', 'Slice', 2.0)],
                    coverage=0.8)
    b = NcnnProfile('b.param', (3, 8, 8), 1, 10, net_ms=12.0, layers=[('c', 'Convolution', 12.0)], coverage=1.0)
    # a's convolutions: 6 of its 8 layer ms, so 0.75 * 10 = 7.5 ms of its network: 7.5 / 12 of b's
    assert ncnn_floor(a, b) == pytest.approx(0.625)


def test_open_input_shape_needs_shape(tmp_path: Path) -> None:
    param, weights = _write_model(tmp_path, 'open', PARAM.replace(' 0=16 1=16 2=3', ''))
    p = profile_ncnn(param, weights, (3, 12, 20), runs=2, warmup=0, rounds=1)
    assert p.input_shape == (3, 12, 20) and p.macs['conv0'] == 432 * 12 * 20
    with pytest.raises(ValueError, match='does not fix its input shape'):
        profile_ncnn(param, weights, None, runs=2, warmup=0, rounds=1)


def test_cli_with_a_peer(model: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    peer = _write_model(tmp_path, 'peer')
    out = tmp_path / 'profile.json'
    tool = load_script('tools/analysis_tools/ncnn_profile.py', 'ncnn_profile_tool')
    rc = run_main(tool.main, [str(model[0]), str(model[1]), '--peer', str(peer[0]), str(peer[1]), *QUICK,
                              '--top', '2', '--out', str(out)])
    stdout, err = capsys.readouterr()
    assert rc == 0, err
    result = json.loads(out.read_text())
    first, second = result['profiles']
    assert first['conv_macs'] == second['conv_macs'] == sum(MACS.values()) and len(first['slowest_layers']) == 2
    (cmp,) = result['comparisons']
    assert cmp['ratio'] == first['net_ms'] / second['net_ms'] and result['fp16'] is True
    assert 'hand.param / peer.param: ' in stdout and 'with only its convolutions: ' in stdout
    assert 'by layer type:' in stdout and f'saved {out}' in stdout


def test_torch_free_and_from_a_copied_runtime(model: tuple[Path, Path], tmp_path: Path) -> None:
    """The subcommand with torch unimportable, from the runtime folder copied alone (as to a board)."""
    import shufflenet_det.runtime as runtime
    shutil.copytree(Path(runtime.__file__).parent, tmp_path / 'runtime',
                    ignore=shutil.ignore_patterns('__pycache__'))
    code = textwrap.dedent(f'''
        import sys
        sys.modules.update(dict.fromkeys(('torch', 'torchvision', 'mmcv', 'mmengine', 'mmdet', 'shufflenet_det')))
        from runtime.cli import main
        from runtime.errors import run_main
        sys.exit(run_main(main, ['ncnn-profile', {str(model[0])!r}, {str(model[1])!r}, '--runs', '2', '--warmup',
                                 '0', '--rounds', '1', '--no-fp16']))
    ''')
    proc = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr
    assert 'hand.param (3x16x16, 1 thread(s), 2 runs)' in proc.stdout and 'convolution' in proc.stdout


@pytest.mark.parametrize('case, message', [
    ('missing', "the model '{missing}' does not exist"),
    ('wrong_shape', '--shape 3 32 32: {param!r} fixes the input H to 16'),
    ('twice', 'is the same file as the model'),
    ('out_is_input', '--out {param!r} is the same file as the model'),
    ('unknown_layer', "has type 'Fancy', whose weights this reader does not know"),
    ('short_bin', 'ends inside the weights of layer'),
    ('runs', '--runs must be >= 1'),
    ('rounds', '--rounds (5) must not exceed --runs (4)'),
])
def test_bad_inputs(case: str, message: str, model: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    param, weights = (str(p) for p in model)
    bad = tmp_path / 'bad'
    if case == 'unknown_layer':
        param, weights = (str(p) for p in _write_model(bad, 'fancy', PARAM.replace('8 9\n', '9 10\n') +
                                                        'Fancy f 1 1 out0 z 0=1\n'))
    if case == 'short_bin':
        param, weights = (str(p) for p in _write_model(bad, 'short'))
        Path(weights).write_bytes(Path(weights).read_bytes()[:-8])
    missing = str(tmp_path / 'missing.param')
    argv = {'missing': [missing, weights], 'wrong_shape': [param, weights, '--shape', '3', '32', '32'],
            'twice': [param, weights, '--peer', param, weights], 'out_is_input': [param, weights, '--out', param],
            'runs': [param, weights, '--runs', '0'], 'rounds': [param, weights, '--runs', '4', '--rounds', '5']
            }.get(case, [param, weights])
    before = sorted(tmp_path.rglob('*'))
    rc = run_main(runtime_main, ['ncnn-profile', *argv, *([] if case in ('runs', 'rounds') else QUICK)])
    assert rc == 2
    assert message.format(missing=missing, param=param) in capsys.readouterr().err
    assert sorted(tmp_path.rglob('*')) == before
