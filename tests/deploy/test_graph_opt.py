"""shufflenet_det.deploy.graph_opt: the exact shuffle rewrites, on hand-made graphs and on every backbone family."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from helpers import assert_close_scaled, randomize_bn
from shufflenet_det.deploy.graph_opt import split_deinterleave
from shufflenet_det.deploy.onnx_export import export_backbone_onnx

C, H, W = 12, 5, 6
#: A rewrite only moves channels (strided copies instead of a transpose): the outputs must be bit-identical.
EXACT = 0.0


def _megvii_split(halves: str = 'slices', extra_reader: bool = False, mid: int = C) -> onnx.ModelProto:
    """``x -> Concat(x, x * 2) -> de-interleave (Reshape, Transpose, Reshape) -> the two halves``, each half then
    through its own Relu (graph outputs); the Megvii units' channel split as torch.onnx writes it."""
    c2 = 2 * C
    inits = [numpy_helper.from_array(np.array([1, C, 2, H, W], np.int64), 's5'),
             numpy_helper.from_array(np.array([1, c2, H, W], np.int64), 's4'),
             numpy_helper.from_array(np.array(2.0, np.float32), 'two')]
    nodes = [helper.make_node('Mul', ['x', 'two'], ['x2']),
             helper.make_node('Concat', ['x', 'x2'], ['cat'], axis=1),
             helper.make_node('Reshape', ['cat', 's5'], ['r5']),
             helper.make_node('Transpose', ['r5'], ['t5'], perm=[0, 2, 1, 3, 4]),
             helper.make_node('Reshape', ['t5', 's4'], ['de'])]
    if halves == 'split':
        inits.append(numpy_helper.from_array(np.array([C, C], np.int64), 'sizes'))
        nodes.append(helper.make_node('Split', ['de', 'sizes'], ['h0', 'h1'], axis=1))
    else:
        for name, value in (('z', 0), ('c', mid), ('big', 2 ** 63 - 1), ('one', 1)):
            inits.append(numpy_helper.from_array(np.array([value], np.int64), name))
        # the second half first in the graph, with an open end: both are still recognised
        nodes.append(helper.make_node('Slice', ['de', 'c', 'big', 'one', 'one'], ['h1']))
        nodes.append(helper.make_node('Slice', ['de', 'z', 'c', 'one', 'one'], ['h0']))
    nodes += [helper.make_node('Relu', ['h0'], ['y0']), helper.make_node('Relu', ['h1'], ['y1'])]
    outputs = ['y0', 'y1'] + (['de'] if extra_reader else [])
    graph = helper.make_graph(
        nodes, 'g', [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, C, H, W])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, ['n', 'c', 'h', 'w']) for o in outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
    return sess.run(None, {'x': x})


@pytest.mark.parametrize('halves', ['slices', 'split'])
def test_deinterleave_becomes_two_strided_slices(halves: str) -> None:
    model = _megvii_split(halves)
    x = np.random.default_rng(0).standard_normal((1, C, H, W)).astype(np.float32)
    before = _run(model, x)
    cat = np.concatenate([x, 2 * x], 1)
    assert_close_scaled(before[0], np.maximum(cat[:, 0::2], 0), atol=EXACT)  # the pattern is the even/odd split
    assert_close_scaled(before[1], np.maximum(cat[:, 1::2], 0), atol=EXACT)
    assert split_deinterleave(model) == 1
    ops = [n.op_type for n in model.graph.node]
    assert ops.count('Slice') == 2 and not {'Transpose', 'Reshape', 'Split'} & set(ops)
    after = _run(model, x)
    for b, a in zip(before, after):
        assert_close_scaled(a, b, atol=EXACT)


@pytest.mark.parametrize('case', ['intermediate-output', 'uneven-parts'])
def test_deinterleave_left_alone_where_it_does_not_apply(case: str) -> None:
    """A de-interleaved tensor that is also a graph output is needed whole; parts other than the two halves are
    not the even and odd channels."""
    model = _megvii_split(extra_reader=True) if case == 'intermediate-output' else _megvii_split(mid=C - 2)
    before = model.SerializeToString()
    assert split_deinterleave(model) == 0
    assert model.SerializeToString() == before


#: One small member of each backbone family the project exports, and the rewrites that apply to it:
#: V2 (torchvision layout) and ESNet shuffle after the concatenation (interleave), the Megvii layout (V2+, OneShot,
#: DetNAS) de-interleaves at the start of every unit (strided slices), V1's 3-group shuffle sits between grouped
#: convolutions and stays. Channel padding applies wherever a conv's output width is not a multiple of 16.
FAMILIES = {
    'v1': (dict(type='ShuffleNetV1', groups=3, widen_factor=0.5), set()),
    'v2': (dict(type='ShuffleNetV2', widen_factor=0.5), {'concat_shuffle_to_interleave', 'channel_padding'}),
    'v2-megvii': (dict(type='ShuffleNetV2', widen_factor=1.0, layout='megvii'),
                  {'deinterleave_to_strided_slices', 'channel_padding'}),
    'v2plus': (dict(type='ShuffleNetV2Plus', arch='Small'), {'deinterleave_to_strided_slices', 'channel_padding'}),
    'oneshot': (dict(type='OneShot'), {'deinterleave_to_strided_slices', 'channel_padding'}),
    'detnas': (dict(type='DetNAS', arch='COCO-FPN-300M'), {'deinterleave_to_strided_slices'}),
    'esnet': (dict(type='ESNet', arch='S'), {'concat_shuffle_to_interleave', 'channel_padding'}),
}


@pytest.mark.slow
@pytest.mark.parametrize('family', list(FAMILIES))
def test_rewrites_are_exact_on_every_backbone_family(tmp_path: Path, family: str) -> None:
    from mmdet.registry import MODELS

    import shufflenet_det  # noqa: F401
    cfg, expected = FAMILIES[family]
    torch.manual_seed(0)
    model = MODELS.build(dict(cfg, out_indices=(1, 2, 3)))
    model.init_weights()
    model = randomize_bn(model, 0).eval()
    report = export_backbone_onnx(model, tmp_path / 'bb.onnx', (1, 3, 64, 64), simplify='onnxslim', verbose=False)
    assert {name for name, count in report['graph_rewrites'].items() if count} == expected
    # the export's own parity check (1e-4 of each feature map's magnitude; BN folding reorders float32 sums, the
    # rewrites themselves only move channels or add exact zeros)
    assert report['parity']['passed']
    x = torch.randn(1, 3, 64, 64)  # a third input: the check inputs are seeded noise and pictures
    with torch.no_grad():
        ref = model(x)
    sess = ort.InferenceSession(str(tmp_path / 'bb.onnx'), providers=['CPUExecutionProvider'])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    for r, g in zip(ref, got):
        assert_close_scaled(g, r, atol=1e-4)
