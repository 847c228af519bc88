"""Peer mode of tools/analysis_tools/benchmark.py: --peer-onnx / --peer-ncnn rows timed next to the project's export,
their ratios, the checks of the peer files, and tests/official_refs/export_peers.py.

The peers here are tiny modules exported by torch.onnx / pnnx (fast); the ratios are checked against the rows'
medians of the same run (exactly: one IEEE division of the same two floats), never against a time.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any

import mmdet  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import onnxruntime  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import pytest
import torch
from torch import nn

import deploy_fixtures as fx
from helpers import assert_close_scaled, load_script
from shufflenet_det.utils.cli import run_main

#: The project model of the tool runs: a small ShuffleNetV2 (one output) at 64x64.
BACKBONE = ['--backbone', 'ShuffleNetV2', '--backbone-args', '{"widen_factor": 0.5, "out_indices": [3]}']
QUICK = ['--runs', '3', '--warmup', '0', '--rounds', '1', '--threads', '1', '--no-progress', '--no-peers']


class Tiny(nn.Module):
    """A two-conv network: the peer's content does not matter, only that it is another model file."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, 2, 1), nn.Conv2d(8, 16, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


class TwoInputs(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + y


@pytest.fixture(scope='module')
def peers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Peer files: ONNX static 1x3x64x64, ONNX with dynamic H / W, ONNX with two inputs, an ncnn pair (pnnx writes no
    input shape: dynamic), an ncnn pair whose Input layer fixes 3x64x64."""
    from shufflenet_det.deploy.ncnn_export import pnnx_convert
    from shufflenet_det.deploy.onnx_export import torch_onnx_export
    root = tmp_path_factory.mktemp('peers')
    torch.manual_seed(0)
    net, x = Tiny().eval(), torch.zeros(1, 3, 64, 64)
    torch_onnx_export(net, (x,), root / 'tiny.onnx', ['data'], ['output'], 11)
    torch_onnx_export(net, (x,), root / 'tiny_dyn.onnx', ['data'], ['output'], 11,
                      dynamic_axes={'data': {2: 'h', 3: 'w'}})
    torch_onnx_export(TwoInputs(), (x, x), root / 'two.onnx', ['x', 'y'], ['z'], 11)
    work = root / 'pnnx'
    work.mkdir()
    pnnx_convert(net, x, root / 'tiny.param', root / 'tiny.bin', work)
    lines = (root / 'tiny.param').read_text().splitlines()
    assert lines[2].split()[0] == 'Input' and '=' not in lines[2]  # pnnx writes no input shape
    lines[2] += ' 0=64 1=64 2=3'
    (root / 'static.param').write_text('\n'.join(lines) + '\n')
    (root / 'static.bin').write_bytes((root / 'tiny.bin').read_bytes())
    return {p.name: p for p in root.iterdir()}


def _tool() -> Any:
    return load_script('tools/analysis_tools/benchmark.py', 'benchmark_tool')


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = run_main(_tool().main, argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _row(rows: list[dict], model: str, backend: str) -> dict:
    found = [r for r in rows if r['model'] == model and r['backend'] == backend]
    assert len(found) == 1, (model, backend, [(r['model'], r['backend']) for r in rows])
    return found[0]


def _check_ratio(data: dict, model: str, backend: str, peer: str, peer_backend: str) -> None:
    ours, theirs = _row(data['rows'], model, backend), _row(data['rows'], peer, peer_backend)
    assert ours['status'] == theirs['status'] == 'ok', (ours['note'], theirs['note'])
    entry = [v for v in data['peer_ratios'] if v['peer_backend'] == peer_backend]
    assert len(entry) == 1 and entry[0]['backend'] == backend and entry[0]['model'] == model
    # exact: the tool divides the two rows' medians (one correctly rounded IEEE division; JSON keeps every bit)
    assert entry[0]['ratio'] == ours['median_ms'] / theirs['median_ms']
    assert entry[0]['median_ms'] == ours['median_ms'] and entry[0]['peer_ms'] == theirs['median_ms']


def test_onnx_peer_next_to_the_backbone(peers: dict[str, Path], tmp_path: Path, capsys) -> None:
    """--backbone: the peer ONNX is compared with ort-deploy, which --backends lacked and the tool added."""
    out = tmp_path / 'bench.json'
    rc, text, err = _run([*BACKBONE, '--sizes', '64', '--backends', 'torch-plain', *QUICK,
                          '--peer-onnx', str(peers['tiny.onnx']), '--out', str(out)], capsys)
    assert rc == 0, err
    assert 'added the ort-deploy row' in text
    data = json.loads(out.read_text())
    model = data['rows'][0]['model']
    _check_ratio(data, model, 'ort-deploy', 'peer:tiny', 'ort-peer')
    assert data['settings']['peer_onnx'] == [str(peers['tiny.onnx'])] and 'ort-deploy' in data['settings']['backends']
    assert 'same session as ort-deploy' in _row(data['rows'], 'peer:tiny', 'ort-peer')['note']
    ratio = data['peer_ratios'][0]['ratio']
    assert f'64x64: ort-deploy / peer onnx = {ratio:.2f}x' in text


def test_several_onnx_peers_in_one_run(peers: dict[str, Path], tmp_path: Path, capsys) -> None:
    """Two ONNX peers (here the same file under two names: a peer and a variant of it) are timed in the same
    rounds, each with its row and its ratio to the same project row."""
    other = tmp_path / 'variant.onnx'
    shutil.copyfile(peers['tiny.onnx'], other)
    out = tmp_path / 'bench.json'
    rc, text, err = _run([*BACKBONE, '--sizes', '64', '--backends', 'ort-deploy', *QUICK, '--peer-onnx',
                          str(peers['tiny.onnx']), str(other), '--out', str(out)], capsys)
    assert rc == 0, err
    data = json.loads(out.read_text())
    model = data['rows'][0]['model']
    assert sorted(v['peer'] for v in data['peer_ratios']) == ['peer:tiny', 'peer:variant']
    for peer in ('peer:tiny', 'peer:variant'):
        ours, theirs = _row(data['rows'], model, 'ort-deploy'), _row(data['rows'], peer, 'ort-peer')
        entry = next(v for v in data['peer_ratios'] if v['peer'] == peer)
        assert entry['ratio'] == ours['median_ms'] / theirs['median_ms']
    assert text.count('ort-deploy / peer onnx = ') == 2


def test_ncnn_peer_in_the_ncnn_child(peers: dict[str, Path], tmp_path: Path, capsys) -> None:
    """--backbone: the peer ncnn pair is timed in the ncnn row's child, interleaved with it, compared with ncnn."""
    out = tmp_path / 'bench.json'
    rc, text, err = _run([*BACKBONE, '--sizes', '64', '--backends', 'ort-deploy', *QUICK, '--peer-ncnn',
                          str(peers['tiny.param']), str(peers['tiny.bin']), '--out', str(out)], capsys)
    assert rc == 0, err
    assert 'added the ncnn row' in text
    data = json.loads(out.read_text())
    model = data['rows'][0]['model']
    _check_ratio(data, model, 'ncnn', 'peer:tiny', 'ncnn-peer')
    ours, theirs = _row(data['rows'], model, 'ncnn')['note'], _row(data['rows'], 'peer:tiny', 'ncnn-peer')['note']
    assert 'interleaved in 1 round in the same child with peer:tiny' in ours
    assert 'the same ncnn options' in theirs and f'interleaved in 1 round in the same child with {model}' in theirs
    assert 'ncnn / peer ncnn =' in text


@pytest.mark.slow
def test_detector_peers_compare_the_network_alone(peers: dict[str, Path], tmp_path: Path, capsys) -> None:
    """--config: the ONNX peer against ort-raw (no NMS), the ncnn peer against ncnn-raw (no numpy
    post-processing, same child rounds); dynamic peers take the benchmarked size."""
    out = tmp_path / 'bench.json'
    rc, text, err = _run(['--config', str(fx.LITE_CFG), '--sizes', '128x160', '--backends', 'ort-deploy', *QUICK,
                          '--peer-onnx', str(peers['tiny_dyn.onnx']), '--peer-ncnn', str(peers['tiny.param']),
                          str(peers['tiny.bin']), '--out', str(out)], capsys)
    assert rc == 0, err
    data = json.loads(out.read_text())
    name = fx.LITE_CFG.stem
    _check_ratio(data, name, 'ort-raw', 'peer:tiny_dyn', 'ort-peer')
    _check_ratio(data, name, 'ncnn-raw', 'peer:tiny', 'ncnn-peer')
    assert 'numpy post-processing' in _row(data['rows'], name, 'ncnn')['note']
    assert 'network alone' in _row(data['rows'], name, 'ncnn-raw')['note']
    assert f'{name} 128x160: ort-raw / peer onnx =' in text and f'{name} 128x160: ncnn-raw / peer ncnn =' in text


def test_peer_row_without_ncnn_is_reported(peers: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ncnn / pnnx the partner's ncnn row is unavailable: the peer row too, and its ratio says why."""
    from shufflenet_det.benchmark import check_peer_ncnn, peer_ratios, run_benchmark
    peer = check_peer_ncnn(str(peers['tiny.param']), str(peers['tiny.bin']))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec',
                        lambda name, *args: None if name in ('ncnn', 'pnnx') else find_spec(name, *args))
    rows = run_benchmark([('bb', fx.backbone(widen_factor=0.5, out_indices=(3,)))], [(64, 64)], ['torch-plain'],
                         runs=2, warmup=0, threads=1, progress=False, peer_files=[peer])
    assert [(r.model, r.backend, r.status) for r in rows] == [
        ('bb', 'torch-plain', 'ok'), ('bb', 'ncnn', 'unavailable'), ('peer:tiny', 'ncnn-peer', 'unavailable')]
    (entry,) = peer_ratios(rows, [peer], 'bb', detector=False)
    assert entry['ratio'] is None and 'not installed' in entry['reason']


def test_peer_shapes_static_and_dynamic(peers: dict[str, Path]) -> None:
    from shufflenet_det.benchmark import check_peer_ncnn, check_peer_onnx, check_peer_shape
    dyn = check_peer_onnx(str(peers['tiny_dyn.onnx']))
    assert dyn.input_shape == (1, 3, None, None) and dyn.output_names == ['output']
    check_peer_shape(dyn, [(64, 64), (96, 128)], batch=1, detector=False)  # dynamic H / W: any size
    with pytest.raises(ValueError, match=r'1x3x\?x\?.*2x3x64x64'):  # a static batch of 1 against --batch 2
        check_peer_shape(dyn, [(64, 64)], batch=2, detector=False)
    check_peer_shape(dyn, [(64, 64)], batch=2, detector=True)  # detectors run one image per call
    pair = check_peer_ncnn(str(peers['tiny.param']), str(peers['tiny.bin']))
    assert pair.input_shape == (None, None, None) and pair.output_names == ['out0']
    check_peer_shape(pair, [(64, 64), (96, 96)], batch=3, detector=False)
    static = check_peer_ncnn(str(peers['static.param']), str(peers['static.bin']))
    assert static.input_shape == (3, 64, 64) and static.static_hw
    check_peer_shape(static, [(64, 64)], batch=1, detector=True)


def _bad_cases(peers: dict[str, Path], tmp: Path) -> list[tuple[list[str], list[str]]]:
    """(peer arguments, texts the error must name) for every refused input."""
    (tmp / 'text.onnx').write_text('not a model')
    (tmp / 'empty.onnx').write_bytes(b'')
    (tmp / 'folder.onnx').mkdir()
    (tmp / 'model.txt').write_bytes(peers['tiny.onnx'].read_bytes())
    (tmp / 'bad.param').write_text('hello\n')
    (tmp / 'counts.param').write_text('7767517\n3 3\nInput in0 0 1 in0\n')
    (tmp / 'two_in.param').write_text('7767517\n3 3\nInput in0 0 1 in0\nInput in1 0 1 in1\nBinaryOp add 2 1 in0 in1 '
                                      'out0\n')
    tiny, tiny_bin = str(peers['tiny.param']), str(peers['tiny.bin'])
    return [
        (['--peer-onnx', str(tmp / 'missing.onnx')], ['--peer-onnx', 'missing.onnx', 'does not exist']),
        (['--peer-onnx', str(tmp / 'folder.onnx')], ['--peer-onnx', 'folder.onnx', 'not a file']),
        (['--peer-onnx', str(tmp / 'model.txt')], ['--peer-onnx', 'model.txt', '.onnx file']),
        (['--peer-onnx', str(tmp / 'text.onnx')], ['--peer-onnx', 'text.onnx', 'not a valid ONNX model']),
        (['--peer-onnx', str(tmp / 'empty.onnx')], ['--peer-onnx', 'empty.onnx', 'empty']),
        (['--peer-onnx', str(peers['two.onnx'])], ['--peer-onnx', 'two.onnx', '2 inputs']),
        (['--peer-onnx', str(peers['tiny.onnx']), '--sizes', '96'],
         ['--peer-onnx', 'tiny.onnx', '1x3x64x64', '1x3x96x96']),
        (['--peer-onnx', str(peers['tiny.onnx']), '--sizes', '64', '96'],
         ['--peer-onnx', 'tiny.onnx', 'static-shaped', 'one --sizes']),
        (['--peer-ncnn', tiny, str(tmp / 'missing.bin')], ['--peer-ncnn', 'missing.bin', 'does not exist', tiny]),
        (['--peer-ncnn', tiny_bin, tiny], ['--peer-ncnn', 'tiny.bin', '.param file']),
        (['--peer-ncnn', tiny, tiny], ['--peer-ncnn', 'tiny.param', '.bin file']),
        (['--peer-ncnn', str(tmp / 'bad.param'), tiny_bin], ['--peer-ncnn', 'bad.param', 'magic number']),
        (['--peer-ncnn', str(tmp / 'counts.param'), tiny_bin], ['--peer-ncnn', 'counts.param', '3 layers']),
        (['--peer-ncnn', str(tmp / 'two_in.param'), tiny_bin], ['--peer-ncnn', 'two_in.param', '2 Input layers']),
        (['--peer-ncnn', str(peers['static.param']), str(peers['static.bin']), '--sizes', '96'],
         ['--peer-ncnn', 'static.param', '3x64x64', '3x96x96']),
        (['--peer-ncnn', str(peers['static.param']), str(peers['static.bin']), '--sizes', '64', '80'],
         ['--peer-ncnn', 'static.param', 'static-shaped']),
        (['--peer-onnx', str(peers['tiny.onnx']), str(tmp / 'tiny.onnx')], ['--peer-onnx', 'names must differ']),
    ]


def test_bad_peer_inputs_are_refused_before_timing(peers: dict[str, Path], tmp_path: Path, capsys) -> None:
    """Every bad peer input ends the tool with exit status 2 and one message naming the option and the file,
    before any model is built or timed: nothing is written to --out."""
    out = tmp_path / 'bench.json'
    for peer_args, texts in _bad_cases(peers, tmp_path):
        rc, _, err = _run([*BACKBONE, '--sizes', '64', '--backends', 'torch-plain', *QUICK, *peer_args,
                           '--out', str(out)], capsys)
        assert rc == 2, (peer_args, err)
        assert err.startswith('error: ') and err.count('\n') == 1, err
        for text in texts:
            assert text in err, (peer_args, text, err)
        assert not out.exists()
    rc, _, err = _run(['--config', str(fx.LITE_CFG), str(fx.MINI_CFG), *QUICK, '--peer-onnx',
                       str(peers['tiny_dyn.onnx']), '--out', str(out)], capsys)
    assert rc == 2 and 'give one --config' in err and not out.exists()
    rc, _, err = _run([*BACKBONE, *QUICK, '--peer-onnx', str(peers['tiny.onnx']), '--out',
                       str(peers['tiny.onnx'])], capsys)
    assert rc == 2 and '--peer-onnx' in err and '--out' in err


@pytest.mark.skipif(not hasattr(os, 'geteuid') or os.geteuid() == 0, reason='root reads any file')
def test_unreadable_peer_is_refused(peers: dict[str, Path], tmp_path: Path, capsys) -> None:
    locked = tmp_path / 'locked.onnx'
    locked.write_bytes(peers['tiny.onnx'].read_bytes())
    locked.chmod(0)
    rc, _, err = _run([*BACKBONE, '--sizes', '64', *QUICK, '--peer-onnx', str(locked)], capsys)
    assert rc == 2 and 'locked.onnx' in err and 'not readable' in err


# ---------------------------------------------------------------------------------------------------- export_peers
#: The export computes the module's function in float32 with BN folded into the convolutions (by the exporter) and
#: another kernel's summation order (ONNX Runtime): a few float32 eps (1.2e-7) per layer of the output's magnitude
#: S over NanoDet-Plus's ~40 layers; allowed 2e-5 of max(1, S) plus 1e-5 of each element (assert_close_scaled). A
#: missing BN, a wrong weight or an untraced branch moves outputs by O(S).
ATOL, RTOL = 2e-5, 1e-5


def test_export_peers_nanodet_plus_onnx_equals_forward_onnx(tmp_path: Path, capsys) -> None:
    import onnx
    import onnxruntime as ort

    from official_refs.export_peers import SEED, main, nanodet_module
    path = tmp_path / 'nanodet-plus-m_320.onnx'
    assert run_main(main, ['--what', 'nanodet-plus-m_320', '--onnx', str(path)]) == 0
    text = capsys.readouterr().out
    assert 'opset 11' in text and 'simplified with onnx' in text
    model = onnx.load(str(path))
    assert model.opset_import[0].version == 11 and [o.name for o in model.graph.output] == ['output']
    assert not any(n.op_type == 'BatchNormalization' for n in model.graph.node)  # folded by the exporter
    sess = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    assert [i.name for i in sess.get_inputs()] == ['data'] and sess.get_inputs()[0].shape == [1, 3, 320, 320]
    module, size = nanodet_module('nanodet-plus-m_320')  # the same seeded weights as the script's
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(SEED + 7))
    with torch.no_grad():
        expected = module.net.forward_onnx(x)
    (got,) = sess.run(None, {'data': x.numpy()})
    assert got.shape == (1, 2125, 80 + 32)  # 40x40 + 20x20 + 10x10 + 5x5 points
    assert_close_scaled(got, expected, atol=ATOL, rtol=RTOL)
    # the file is a valid peer of a 320x320 detector row
    from shufflenet_det.benchmark import check_peer_onnx, check_peer_shape
    check_peer_shape(check_peer_onnx(str(path)), [(320, 320)], batch=1, detector=True)


@pytest.mark.slow
@pytest.mark.compat
def test_export_peers_torchvision_is_the_project_backbone_network(tmp_path: Path, capsys) -> None:
    """On the openmmlab stack (real torchvision): the export holds torchvision's conv1 ... stage4, with the output
    shapes of the project's default ShuffleNetV2 backbone, and computes them."""
    if importlib.util.find_spec('torchvision') is None and os.environ.get('SHUFFLENET_DET_REQUIRE_PEERS') != '1':
        pytest.skip('torchvision is not installed here; it runs on the openmmlab stack')
    import onnxruntime as ort

    from official_refs.export_peers import main, torchvision_module
    path = tmp_path / 'tv.onnx'
    assert run_main(main, ['--what', 'torchvision-shufflenetv2-1.0x', '--onnx', str(path)]) == 0
    assert 'opset 17' in capsys.readouterr().out
    sess = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = torchvision_module([1, 2, 3])(x)  # seeded: the script's weights
    assert [g.shape for g in got] == [(1, 116, 28, 28), (1, 232, 14, 14), (1, 464, 7, 7)]
    for g, e in zip(got, expected):
        assert_close_scaled(g, e, atol=ATOL, rtol=RTOL)
