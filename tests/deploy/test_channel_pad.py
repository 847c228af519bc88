"""shufflenet_det.deploy.channel_pad: exact zero-padding of channel regions (conv -> channel-wise ops -> convs)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from helpers import assert_close_scaled
from shufflenet_det.deploy.channel_pad import pad_channel_regions

#: Zero-padded channels add exact zeros to every sum, but ONNX Runtime may run the wider convolutions with other
#: kernels (vector width, blocking), i.e. another float32 summation order. The chains sum <= 12 terms per conv,
#: three convs deep, with N(0, 1) weights: outputs reach S ~ 1e2, and the reordering costs a few float32 eps
#: (1.2e-7) x sqrt(12) per conv of the terms' magnitude (<= S), ~1e-6 of S. Allowed: 1e-5 of max(1, S). A padded
#: weight that is not zero, or a wrong group count, changes outputs by O(S).
PAD_ATOL = 1e-5


def _chain(prefix: str, src: str, cin: int, mid: int, cout: int, rng: np.random.Generator, act: str = 'Relu',
           shared_bias: str | None = None) -> tuple[list, list, str]:
    """Nodes and initializers of ``src -> 1x1 conv -> act -> 3x3 depthwise -> 1x1 conv``; returns the output name."""
    inits = [numpy_helper.from_array(rng.standard_normal((mid, cin, 1, 1)).astype(np.float32), f'{prefix}w1'),
             numpy_helper.from_array(rng.standard_normal(mid).astype(np.float32), f'{prefix}b1'),
             numpy_helper.from_array(rng.standard_normal((mid, 1, 3, 3)).astype(np.float32), f'{prefix}w2'),
             numpy_helper.from_array(rng.standard_normal((cout, mid, 1, 1)).astype(np.float32), f'{prefix}w3'),
             numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32), f'{prefix}b3')]
    b2 = shared_bias or f'{prefix}b2'
    if shared_bias is None:
        inits.append(numpy_helper.from_array(rng.standard_normal(mid).astype(np.float32), b2))
    nodes = [helper.make_node('Conv', [src, f'{prefix}w1', f'{prefix}b1'], [f'{prefix}a'], kernel_shape=[1, 1]),
             helper.make_node(act, [f'{prefix}a'], [f'{prefix}r']),
             helper.make_node('Conv', [f'{prefix}r', f'{prefix}w2', b2], [f'{prefix}d'], kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1], group=mid),
             helper.make_node('Conv', [f'{prefix}d', f'{prefix}w3', f'{prefix}b3'], [f'{prefix}out'],
                              kernel_shape=[1, 1])]
    return nodes, inits, f'{prefix}out'


def _model(extra_output: bool = False, shared_bias: bool = False, act: str = 'Relu') -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    n1, i1, o1 = _chain('p_', 'x', 6, 5, 7, rng, act=act)  # mid 5: padded to 8
    n2, i2, o2 = _chain('q_', 'x', 6, 9, 3, rng, shared_bias='shared' if shared_bias else None)
    n3, i3, o3 = _chain('s_', 'x', 6, 8, 3, rng)  # mid 8: already a multiple of 4
    inits = i1 + i2 + i3
    nodes = n1 + n2 + n3
    if shared_bias:  # the depthwise bias of chain q_ is also used elsewhere: the chain must be left alone
        inits.append(numpy_helper.from_array(np.ones(9, np.float32), 'shared'))
        nodes.append(helper.make_node('Add', ['shared', 'shared'], ['shared2']))
    outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, ['n', 'c', 'h', 'w']) for o in (o1, o2, o3)]
    if extra_output:  # an intermediate tensor of chain p_ is a graph output: the chain must be left alone
        outputs.append(helper.make_tensor_value_info('p_r', TensorProto.FLOAT, ['n', 'c', 'h', 'w']))
    if shared_bias:
        outputs.append(helper.make_tensor_value_info('shared2', TensorProto.FLOAT, ['c']))
    graph = helper.make_graph(nodes, 'g', [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 6, 8, 8])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
    return sess.run(None, {'x': x})


@pytest.mark.parametrize('act', ['Relu', 'Sigmoid'])
def test_padding_is_exact_and_only_where_needed(act: str) -> None:
    model = _model(act=act)
    x = np.random.default_rng(1).standard_normal((1, 6, 8, 8)).astype(np.float32)
    before = _run(model, x)
    assert pad_channel_regions(model, multiple=4) == 2  # p_ (5 -> 8) and q_ (9 -> 12); s_ (8) untouched
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert inits['p_w1'].shape == (8, 6, 1, 1) and inits['p_w2'].shape == (8, 1, 3, 3)
    assert inits['p_w3'].shape == (7, 8, 1, 1) and inits['q_w3'].shape == (3, 12, 1, 1)
    assert inits['s_w1'].shape == (8, 6, 1, 1)
    assert not inits['p_w1'][5:].any() and not inits['p_b1'][5:].any() and not inits['p_w3'][:, 5:].any()
    groups = {n.input[1]: a.i for n in model.graph.node for a in n.attribute if a.name == 'group'}
    assert groups == {'p_w2': 8, 'q_w2': 12, 's_w2': 8}
    after = _run(model, x)
    for b, a in zip(before, after):
        assert b.shape == a.shape
        assert_close_scaled(a, b, atol=PAD_ATOL)


def test_chain_with_an_intermediate_graph_output_is_left_alone() -> None:
    model = _model(extra_output=True)
    x = np.random.default_rng(2).standard_normal((1, 6, 8, 8)).astype(np.float32)
    before = _run(model, x)
    assert pad_channel_regions(model, multiple=4) == 1  # q_ only: p_'s activation is also a graph output
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert inits['p_w1'].shape == (5, 6, 1, 1) and inits['q_w1'].shape == (12, 6, 1, 1)
    for b, a in zip(before, _run(model, x)):
        assert_close_scaled(a, b, atol=PAD_ATOL)


def test_shared_initializers_are_copied_before_padding() -> None:
    """A bias another node also uses (as onnxslim's deduplicated zero biases) gets a private padded copy."""
    model = _model(shared_bias=True)
    x = np.random.default_rng(3).standard_normal((1, 6, 8, 8)).astype(np.float32)
    before = _run(model, x)
    assert pad_channel_regions(model, multiple=4) == 2
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert inits['shared'].shape == (9,)  # the other user still sees the original
    dw = next(n for n in model.graph.node if n.op_type == 'Conv' and n.input[1] == 'q_w2')
    assert dw.input[2] != 'shared' and inits[dw.input[2]].shape == (12,)
    for b, a in zip(before, _run(model, x)):
        assert_close_scaled(a, b, atol=PAD_ATOL)


def test_multiple_is_checked() -> None:
    assert pad_channel_regions(_model(), multiple=1) == 0
    with pytest.raises(ValueError, match='multiple'):
        pad_channel_regions(_model(), multiple=0)


def test_single_channel_chain_keeps_a_valid_group() -> None:
    """A 1-channel depthwise conv (group 1, which exporters may leave implicit) becomes a valid 4-group conv."""
    rng = np.random.default_rng(4)
    nodes, inits, out = _chain('t_', 'x', 6, 1, 2, rng)
    for a in list(nodes[2].attribute):
        if a.name == 'group':
            nodes[2].attribute.remove(a)
    graph = helper.make_graph(nodes, 'g', [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 6, 8, 8])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, ['n', 'c', 'h', 'w'])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    x = rng.standard_normal((1, 6, 8, 8)).astype(np.float32)
    before = _run(model, x)
    assert pad_channel_regions(model, multiple=4) == 1
    assert_close_scaled(_run(model, x)[0], before[0], atol=PAD_ATOL)


def _stem_model(concat_reader: bool = False) -> onnx.ModelProto:
    """``x -> conv (6 -> 5) -> LeakyRelu -> MaxPool`` read by a depthwise conv + 1x1 conv and by another 1x1 conv
    (ShuffleNet V2's stem before the first unit's two branches); optionally also by a Concat."""
    rng = np.random.default_rng(5)

    def init(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    inits = [init('w0', 5, 6, 3, 3), init('b0', 5), init('wd', 5, 1, 3, 3), init('bd', 5), init('wa', 7, 5, 1, 1),
             init('wb', 3, 5, 1, 1), init('bb', 3)]
    nodes = [helper.make_node('Conv', ['x', 'w0', 'b0'], ['c0'], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node('LeakyRelu', ['c0'], ['a0'], alpha=0.1),
             helper.make_node('MaxPool', ['a0'], ['m0'], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node('Conv', ['m0', 'wd', 'bd'], ['d0'], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=5),
             helper.make_node('Conv', ['d0', 'wa'], ['ya'], kernel_shape=[1, 1]),
             helper.make_node('Conv', ['m0', 'wb', 'bb'], ['yb'], kernel_shape=[1, 1])]
    outputs = ['ya', 'yb']
    if concat_reader:
        nodes.append(helper.make_node('Concat', ['m0', 'yb'], ['cat'], axis=1))
        outputs.append('cat')
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, ['n', 'c', 'h', 'w']) for o in outputs]
    graph = helper.make_graph(nodes, 'g', [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 6, 16, 16])],
                              outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_stem_region_through_max_pool_and_two_readers_is_padded_exactly() -> None:
    model = _stem_model()
    x = np.random.default_rng(6).standard_normal((1, 6, 16, 16)).astype(np.float32)
    before = _run(model, x)
    assert pad_channel_regions(model, multiple=8) == 1  # the 5-channel stem; its readers' outputs (7, 3) end outside
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert inits['w0'].shape == (8, 6, 3, 3) and not inits['w0'][5:].any() and not inits['b0'][5:].any()
    assert inits['wd'].shape == (8, 1, 3, 3) and not inits['wd'][5:].any() and not inits['bd'][5:].any()
    assert inits['wa'].shape == (7, 8, 1, 1) and not inits['wa'][:, 5:].any()
    assert inits['wb'].shape == (3, 8, 1, 1) and not inits['wb'][:, 5:].any()
    groups = [a.i for n in model.graph.node for a in n.attribute if a.name == 'group']
    assert groups == [8]
    for b, a in zip(before, _run(model, x)):
        assert b.shape == a.shape
        assert_close_scaled(a, b, atol=PAD_ATOL)


def test_region_read_by_anything_but_convs_is_left_alone() -> None:
    """A Concat reading the max-pooled stem would see the padded channels: nothing is padded."""
    model = _stem_model(concat_reader=True)
    before = model.SerializeToString()
    assert pad_channel_regions(model, multiple=8) == 0
    assert model.SerializeToString() == before
