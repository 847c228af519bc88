"""tools/analysis_tools/ort_profile.py and shufflenet_det.benchmark.ort_profile: ONNX Runtime's profiler by operator
and kind, the convolutions' multiply-adds, the comparison of two models, and the tool's bad inputs.

The models are built here with onnx.helper (a few nodes, 32x32): their multiply-adds are known by hand. Times are
only checked for what holds on any CPU (positive, consistent sums), never for a value.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import pytest
from onnx import TensorProto, helper, numpy_helper, save

from helpers import load_script
from shufflenet_det.benchmark import check_peer_onnx
from shufflenet_det.benchmark.ort_profile import (
    KINDS,
    OpProfile,
    _kernel_events,
    conv_macs_of,
    input_shape_of,
    kind_of,
    ort_floor,
    profile_models,
)
from shufflenet_det.benchmark.report import cpu_model
from shufflenet_det.utils.cli import run_main


def _model(path: Path, hw: tuple[int | str, int | str] = ('h', 'w'), dtype: int = TensorProto.FLOAT) -> Path:
    """input (1, 3, H, W) -> Conv 3->16 3x3 pad 1 -> Relu -> depthwise Conv 3x3 stride 2 (group 16) -> Split 8 + 8
    -> Concat (swapped) -> Transpose (0, 2, 3, 1) -> output. Multiply-adds: H W 16 27 + (H/2)(W/2) 16 9."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node('Conv', ['input', 'w1', 'b1'], ['c1'], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node('Relu', ['c1'], ['r1']),
             helper.make_node('Conv', ['r1', 'w2'], ['c2'], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2],
                              group=16),
             helper.make_node('Split', ['c2', 'halves'], ['a', 'b'], axis=1),
             helper.make_node('Concat', ['b', 'a'], ['cat'], axis=1),
             helper.make_node('Transpose', ['cat'], ['output'], perm=[0, 2, 3, 1])]
    inits = [numpy_helper.from_array(rng.standard_normal((16, 3, 3, 3)).astype(np.float32), 'w1'),
             numpy_helper.from_array(np.zeros(16, np.float32), 'b1'),
             numpy_helper.from_array(rng.standard_normal((16, 1, 3, 3)).astype(np.float32), 'w2'),
             numpy_helper.from_array(np.array([8, 8], np.int64), 'halves')]
    if dtype != TensorProto.FLOAT:  # an image as bytes: cast first
        nodes[0].input[0] = 'input_f'
        nodes.insert(0, helper.make_node('Cast', ['input'], ['input_f'], to=TensorProto.FLOAT))
    graph = helper.make_graph(nodes, 'tiny', [helper.make_tensor_value_info('input', dtype, [1, 3, *hw])],
                              [helper.make_tensor_value_info('output', TensorProto.FLOAT, [1, None, None, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)])
    model.ir_version = 8
    save(model, str(path))
    return path


def _macs(h: int, w: int) -> int:
    return h * w * 16 * 27 + (h // 2) * (w // 2) * 16 * 9


@pytest.fixture(scope='module')
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp('profile')
    return dict(dynamic=_model(root / 'dynamic.onnx'), static=_model(root / 'static.onnx', (32, 32)))


def _tool():
    return load_script('tools/analysis_tools/ort_profile.py', 'ort_profile_tool')


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = run_main(_tool().main, argv)
    out, err = capsys.readouterr()
    return rc, out, err


QUICK = ['--runs', '4', '--warmup', '1', '--rounds', '2', '--no-reference']


def _feed(h: int, w: int) -> dict[str, np.ndarray]:
    return {'input': np.zeros((1, 3, h, w), np.float32)}


def test_conv_macs_counted_on_the_graph(models: dict[str, Path], tmp_path: Path) -> None:
    assert conv_macs_of(models['dynamic'], _feed(32, 48)) == (_macs(32, 48), '')
    assert conv_macs_of(models['static'], _feed(32, 32)) == (_macs(32, 32), '')
    # shapes that ONNX shape inference cannot follow: a Reshape whose target comes from Shape at run time
    model = onnx.load(str(models['dynamic']))
    graph = model.graph
    relu = next(n for n in graph.node if n.op_type == 'Relu')
    relu.output[0] = 'r0'
    graph.node.insert(list(graph.node).index(relu) + 1, helper.make_node('Shape', ['r0'], ['r0_shape']))
    graph.node.insert(list(graph.node).index(relu) + 2, helper.make_node('Reshape', ['r0', 'r0_shape'], ['r1']))
    save(model, str(tmp_path / 'runtime_shape.onnx'))
    assert conv_macs_of(tmp_path / 'runtime_shape.onnx', _feed(32, 32)) == (_macs(32, 32), '')
    assert conv_macs_of(models['static'], _feed(16, 16))[0] is None  # a feed the model refuses: no count


def test_input_shape_from_the_file_and_size(models: dict[str, Path]) -> None:
    dynamic, static = check_peer_onnx(str(models['dynamic'])), check_peer_onnx(str(models['static']))
    assert input_shape_of(dynamic, (40, 24)) == (1, 3, 40, 24)
    assert input_shape_of(static, None) == input_shape_of(static, (32, 32)) == (1, 3, 32, 32)
    with pytest.raises(ValueError, match='dynamic height or width: give --size'):
        input_shape_of(dynamic, None)
    with pytest.raises(ValueError, match='static input size 32x32'):
        input_shape_of(static, (64, 64))


def test_kernel_events_keep_the_timed_runs_only() -> None:
    def run(ts: int, dur: int) -> dict:
        return dict(cat='Session', name='model_run', ts=ts, dur=dur)

    def node(name: str, op: str, ts: int, dur: int) -> dict:
        return dict(cat='Node', name=f'{name}_kernel_time', ts=ts, dur=dur, args=dict(op_name=op))
    trace = [dict(cat='Session', name='session_initialization', ts=0, dur=50), node('init', 'Conv', 10, 5),
             run(100, 40), node('c', 'Conv', 105, 20), node('c', 'Conv', 105, 20),  # the warm-up run
             run(200, 30), node('c', 'Conv', 201, 10), node('s', 'Concat', 215, 4),
             dict(cat='Node', name='c_fence_before', ts=202, dur=1),
             run(300, 50), node('c', 'Conv', 301, 12), node('s', 'Concat', 320, 6)]
    walls, events = _kernel_events(trace, warmup=1)
    assert walls == [0.03, 0.05]
    assert events == [('c', 'Conv', 10.0), ('s', 'Concat', 4.0), ('c', 'Conv', 12.0), ('s', 'Concat', 6.0)]
    assert _kernel_events(trace, warmup=3) == ([], [])


def test_kinds_and_bound_arithmetic() -> None:
    assert [kind_of(op) for op in ('FusedConv', 'ReorderOutput', 'Concat', 'MaxPool', 'Sigmoid')] == \
        ['convolution', 'data movement', 'data movement', 'other', 'other']
    a = OpProfile('a.onnx', (1, 3, 8, 8), 10, run_ms=12.0, profiled_run_ms=13.0,
                  by_op={'Conv': 8.0, 'Concat': 1.0, 'MaxPool': 1.0}, nodes=[], conv_macs=400_000_000)
    b = OpProfile('b.onnx', (1, 3, 8, 8), 10, run_ms=16.0, profiled_run_ms=17.0, by_op={'Conv': 12.0}, nodes=[],
                  conv_macs=None, conv_macs_note='unknown')
    assert a.kernel_ms == 10.0 and [a.kind_ms(k) for k in KINDS] == [8.0, 1.0, 1.0]
    assert a.conv_gmacs == pytest.approx(50.0) and b.conv_gmacs is None
    # a's convolutions take 8 of its 10 kernel ms (profiled), so 8 / 10 * 12 = 9.6 ms of its plain run: 9.6 / 16
    assert ort_floor(a, b) == pytest.approx(0.6)


def test_profile_of_a_model(models: dict[str, Path]) -> None:
    (p,) = profile_models([check_peer_onnx(str(models['dynamic']))], (32, 32), threads=1, runs=6, warmup=2,
                          rounds=3)
    assert p.runs == 6 and p.input_shape == (1, 3, 32, 32) and p.conv_macs == _macs(32, 32)
    assert p.run_ms > 0 and p.profiled_run_ms > 0 and p.kind_ms('convolution') > 0 and p.kind_ms('data movement') > 0
    assert math.isclose(sum(p.kind_ms(k) for k in KINDS), p.kernel_ms, rel_tol=1e-12)
    assert {op for _, op, _ in p.nodes} == set(p.by_op)
    assert p.conv_gmacs == pytest.approx(p.conv_macs / (p.kind_ms('convolution') * 1e-3) / 1e9)
    with pytest.raises(ValueError, match='rounds in'):
        profile_models([check_peer_onnx(str(models['dynamic']))], (32, 32), threads=1, runs=2, warmup=0, rounds=3)


def test_tool_compares_two_models(models: dict[str, Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / 'prof.json'
    rc, stdout, err = _run([str(models['dynamic']), str(models['static']), '--size', '32', '32', *QUICK,
                            '--top', '2', '--out', str(out)], capsys)
    assert rc == 0, err
    result = json.loads(out.read_text())
    first, second = result['profiles']
    assert first['conv_macs'] == second['conv_macs'] == _macs(32, 32) and first['runs'] == 4
    assert len(first['slowest_nodes']) == 2 and result['reference_conv_gmacs_per_s'] is None
    (cmp,) = result['comparisons']
    assert cmp['ratio'] == first['run_ms'] / second['run_ms']
    assert 'cpu_model' in result['environment'] or not Path('/proc/cpuinfo').exists()
    assert 'dynamic.onnx / static.onnx' in stdout and 'with only its convolutions: ' in stdout
    assert 'data movement' in stdout and f'saved {out}' in stdout


def test_tool_reference_convolution(models: dict[str, Path], capsys) -> None:
    rc, stdout, err = _run([str(models['static']), '--runs', '2', '--warmup', '0', '--rounds', '1'], capsys)
    assert rc == 0, err
    assert 'reference: one 1x1 convolution 256 -> 256 channels at 56x56 runs at' in stdout
    assert '% of the reference convolution' in stdout


@pytest.mark.parametrize('case, message', [
    ('missing', "MODEL '{missing}': the ONNX model does not exist"),
    ('not_onnx', "MODEL '{not_onnx}' is not a valid ONNX model"),
    ('no_size', 'has a dynamic height or width: give --size'),
    ('wrong_size', '--size 64 64: {static} has the static input size 32x32'),
    ('twice', 'is given twice'),
    ('out_is_model', '--out {static!r} is the same file as MODEL'),
    ('out_folder', "is a folder; give a file path"),
    ('uint8_input', "its input 'input' is a tensor(uint8); only float32 image tensors are profiled"),
])
def test_tool_bad_inputs(case: str, message: str, models: dict[str, Path], tmp_path: Path, capsys) -> None:
    not_onnx = tmp_path / 'text.onnx'
    not_onnx.write_text('not a model')
    paths = dict(missing=str(tmp_path / 'missing.onnx'), not_onnx=str(not_onnx), static=str(models['static']),
                 dynamic=str(models['dynamic']),
                 uint8=str(_model(tmp_path / 'uint8.onnx', (32, 32), TensorProto.UINT8)))
    argv = {'missing': [paths['missing']], 'not_onnx': [paths['not_onnx']], 'no_size': [paths['dynamic']],
            'wrong_size': [paths['static'], '--size', '64', '64'], 'twice': [paths['static'], paths['static']],
            'out_is_model': [paths['static'], '--out', paths['static']],
            'out_folder': [paths['static'], '--out', str(tmp_path)], 'uint8_input': [paths['uint8']]}[case]
    before = sorted(tmp_path.iterdir())
    rc, _, err = _run([*argv, *QUICK], capsys)
    assert rc == 2
    assert message.format(**paths) in err
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize('argv, message', [
    (['--runs', '0'], '--runs must be >= 1'),
    (['--rounds', '5', '--runs', '2'], '--rounds (5) must not exceed --runs (2)'),
    (['--threads', '0'], '--threads must be >= 1'),
    (['--size', '0', '32'], '--size must be two positive integers'),
])
def test_tool_bad_numbers(argv: list[str], message: str, models: dict[str, Path], capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        _run([str(models['static']), *argv], capsys)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_cpu_model_from_cpuinfo_text() -> None:
    x86 = ('processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14\n'
           'flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni avx512_bf16\n\nprocessor\t: 1\nmodel name\t: other\n')
    assert cpu_model(x86) == dict(cpu_model='AMD EPYC 9R14', cpu_flags=['avx2', 'fma', 'avx512f', 'avx512_vnni',
                                                                         'avx512_bf16'])
    arm = 'processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes crc32 asimddp sve\n'
    assert cpu_model(arm) == dict(cpu_model=None, cpu_flags=['asimd', 'asimddp', 'sve'])
    assert cpu_model('') == dict(cpu_model=None, cpu_flags=[])
