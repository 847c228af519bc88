"""ONNX graph rewrites for ShuffleNet deploy exports.

:func:`fuse_concat_shuffle` replaces the channel shuffle that follows the branch concatenation of every ShuffleNet V2
block, ``Concat(a, b) -> Reshape(N, 2, C/2, H, W) -> Transpose(0, 2, 1, 3, 4) -> Reshape(N, C, H, W)``, by the
equivalent interleave ``Unsqueeze(a, 2), Unsqueeze(b, 2) -> Concat(axis=2) -> Reshape(N, C, H, W)``: stacking the
two halves on a new axis after the channel axis *is* the shuffle of their concatenation, so one full copy of the
feature map per block (the Transpose) disappears.

:func:`split_deinterleave` does the same for the Megvii layout (ShuffleNet V2+, OneShot, DetNAS and ShuffleNetV2 with
``layout='megvii'``), whose units start by separating the even and the odd channels of their input:
``Reshape(N, C/2, 2, H, W) -> Transpose(0, 2, 1, 3, 4) -> Reshape(N, C, H, W)`` followed by the two halves' Slices
(or a Split) becomes two strided Slices of the input, ``x[:, 0::2]`` and ``x[:, 1::2]``: the halves are copied once,
the transposed copy of the whole feature map disappears.

Only static-shape patterns (constant Reshape shapes and Slice bounds) are rewritten; anything else is left as it is,
and the result is checked by the caller's parity test like any export. ShuffleNet V1's shuffle (3 or more groups,
between a grouped 1x1 convolution and a depthwise one) is not rewritten: a grouped convolution cannot absorb a
permutation across its groups.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def _const_values(model: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper
    values = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == 'Constant' and node.attribute and node.attribute[0].name == 'value':
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _consumers(graph: Any) -> dict[str, list[Any]]:
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def _attribute(node: Any, name: str) -> Any:
    from onnx import helper
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)


def _opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')), 13)


def _replace_nodes(model: Any, removed: set[int], added: dict[int, list[Any]]) -> None:
    """Drop the ``removed`` nodes (by id), insert ``added[id(node)]`` at ``node``'s position (node dropped), remove
    initializers nothing reads any more and check the model."""
    import onnx
    graph = model.graph
    nodes = []
    for node in graph.node:
        if id(node) in added:
            nodes.extend(added[id(node)])
        elif id(node) not in removed:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for n in graph.node for name in n.input}
    keep = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    onnx.checker.check_model(model)


def _channel_swap(r1: Any, consumers: dict[str, list[Any]], consts: dict[str, np.ndarray],
                  graph_outputs: set[str]) -> tuple[Any, Any, list[int]] | None:
    """The chain ``r1 (Reshape to 5-d, constant shape) -> Transpose(0, 2, 1, 3, 4) -> Reshape (4-d, constant
    shape)`` that swaps two channel axes (a shuffle or a de-interleave), each intermediate read only by the next node
    and no graph output: ``(transpose, last reshape, 5-d shape)``, or None."""
    def only_consumer(name: str, op: str) -> Any:
        users = consumers.get(name, [])
        if len(users) != 1 or users[0].op_type != op or name in graph_outputs:
            return None
        return users[0]

    if r1.op_type != 'Reshape':
        return None
    tr = only_consumer(r1.output[0], 'Transpose')
    r2 = tr and only_consumer(tr.output[0], 'Reshape')
    if r2 is None or r1.input[1] not in consts or r2.input[1] not in consts:
        return None
    s1, s2 = consts[r1.input[1]].tolist(), consts[r2.input[1]].tolist()
    if len(s1) != 5 or min(s1) <= 0 or list(_attribute(tr, 'perm') or []) != [0, 2, 1, 3, 4] or len(s2) != 4 or \
            s2[1] != s1[1] * s1[2]:
        return None
    return tr, r2, s1


def fuse_concat_shuffle(model: Any) -> int:
    """Rewrite every matching concat + channel shuffle (groups 2) in place; return how many were rewritten."""
    import onnx
    from onnx import helper

    graph = model.graph
    consts = _const_values(model)
    consumers = _consumers(graph)
    graph_outputs = {o.name for o in graph.output}
    opset = _opset(model)
    removed: set[int] = set()
    added: dict[int, list[Any]] = {}
    count = 0

    for concat in graph.node:
        if concat.op_type != 'Concat' or len(concat.input) != 2 or _attribute(concat, 'axis') != 1:
            continue
        users = consumers.get(concat.output[0], [])
        if len(users) != 1 or concat.output[0] in graph_outputs:
            continue
        r1 = users[0]
        chain = _channel_swap(r1, consumers, consts, graph_outputs)
        if chain is None or chain[2][1] != 2:  # (N, 2, C/2, H, W): the two halves' channels interleaved
            continue
        tr, r2, _ = chain
        base = concat.name or concat.output[0]
        new_nodes = []
        stacked_inputs = []
        for i, src in enumerate(concat.input):
            out = f'{base}/interleave_unsqueeze{i}'
            if opset >= 13:
                axes_name = f'{base}/interleave_axes'
                if axes_name not in consts:
                    graph.initializer.append(onnx.numpy_helper.from_array(np.array([2], np.int64), axes_name))
                    consts[axes_name] = np.array([2], np.int64)
                new_nodes.append(helper.make_node('Unsqueeze', [src, axes_name], [out], name=out))
            else:
                new_nodes.append(helper.make_node('Unsqueeze', [src], [out], name=out, axes=[2]))
            stacked_inputs.append(out)
        stacked = f'{base}/interleave_concat'
        new_nodes.append(helper.make_node('Concat', stacked_inputs, [stacked], name=stacked, axis=2))
        new_nodes.append(helper.make_node('Reshape', [stacked, r2.input[1]], [r2.output[0]],
                                          name=f'{base}/interleave_reshape'))
        removed.update(id(n) for n in (concat, r1, tr, r2))
        added[id(r2)] = new_nodes  # at the position of the last replaced node: every input exists by then
        count += 1
    if count:
        _replace_nodes(model, removed, added)
    return count


def _halves(users: list[Any], consts: dict[str, np.ndarray], channels: int) -> list[Any] | None:
    """``users`` if they take the two channel halves of a (N, ``channels``, H, W) tensor - two unit-step Slices on
    axis 1 (constant bounds) or one Split on axis 1 into two equal parts - first half first; None otherwise."""
    half = channels // 2
    if len(users) == 1 and users[0].op_type == 'Split' and len(users[0].output) == 2:
        split = users[0]
        sizes = consts[split.input[1]].tolist() if len(split.input) > 1 and split.input[1] in consts else \
            _attribute(split, 'split')
        axis = _attribute(split, 'axis') or 0
        return [split] if axis == 1 and list(sizes or [half, half]) == [half, half] else None
    if len(users) != 2 or any(u.op_type != 'Slice' or len(u.input) < 4 for u in users):
        return None
    bounds = []
    for user in users:
        if any(name not in consts or consts[name].size != 1 for name in user.input[1:]):
            return None
        values = [consts[name] for name in user.input[1:]]
        start, end, axis = (int(v.reshape(-1)[0]) for v in values[:3])
        step = int(values[3].reshape(-1)[0]) if len(values) > 3 else 1
        if axis != 1 or step != 1:
            return None
        bounds.append((start, min(end, channels)))
    if sorted(bounds) != [(0, half), (half, channels)]:
        return None
    return users if bounds[0] == (0, half) else users[::-1]


def split_deinterleave(model: Any) -> int:
    """Rewrite every matching de-interleave + halves (the Megvii units' channel split) in place into two strided
    Slices; return how many were rewritten."""
    import onnx
    from onnx import helper

    graph = model.graph
    if _opset(model) < 10:  # Slice takes its steps as an input from opset 10 on
        return 0
    consts = _const_values(model)
    consumers = _consumers(graph)
    graph_outputs = {o.name for o in graph.output}
    order = {id(node): i for i, node in enumerate(graph.node)}
    removed: set[int] = set()
    added: dict[int, list[Any]] = {}
    count = 0
    for r1 in graph.node:
        chain = _channel_swap(r1, consumers, consts, graph_outputs)
        if chain is None or chain[2][2] != 2 or chain[1].output[0] in graph_outputs:
            continue  # wanted: (N, C/2, 2, H, W), the even and the odd channels separated, read by the halves only
        tr, r2, s1 = chain
        channels = 2 * s1[1]
        halves = _halves(consumers.get(r2.output[0], []), consts, channels)
        if halves is None:
            continue
        outputs = list(halves[0].output) if len(halves) == 1 else [halves[0].output[0], halves[1].output[0]]
        base = r1.name or r1.output[0]
        names = {}
        for key, value in (('even', [0]), ('odd', [1]), ('end', [channels]), ('axis', [1]), ('step', [2])):
            names[key] = f'{base}/deinterleave_{key}'
            graph.initializer.append(onnx.numpy_helper.from_array(np.array(value, np.int64), names[key]))
        new_nodes = [helper.make_node('Slice', [r1.input[0], names[first], names['end'], names['axis'], names['step']],
                                      [out], name=f'{base}/deinterleave_{first}')
                     for first, out in zip(('even', 'odd'), outputs)]
        removed.update(id(n) for n in (r1, tr, r2, *halves))
        added[id(min(halves, key=lambda n: order[id(n)]))] = new_nodes  # before every reader of either half
        count += 1
    if count:
        _replace_nodes(model, removed, added)
    return count
