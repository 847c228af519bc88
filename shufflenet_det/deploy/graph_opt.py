"""ONNX graph rewrites for ShuffleNet deploy exports.

:func:`fuse_concat_shuffle` replaces the channel shuffle that follows the branch concatenation of every ShuffleNet V2
block, ``Concat(a, b) -> Reshape(N, 2, C/2, H, W) -> Transpose(0, 2, 1, 3, 4) -> Reshape(N, C, H, W)``, by the
equivalent interleave ``Unsqueeze(a, 2), Unsqueeze(b, 2) -> Concat(axis=2) -> Reshape(N, C, H, W)``: stacking the
two halves on a new axis after the channel axis *is* the shuffle of their concatenation, so one full copy of the
feature map per block (the Transpose) disappears. Only static-shape patterns (constant Reshape shapes) are rewritten;
anything else is left as it is, and the result is checked by the caller's parity test like any export.
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


def fuse_concat_shuffle(model: Any) -> int:
    """Rewrite every matching concat + channel shuffle (groups 2) in place; return how many were rewritten."""
    import onnx
    from onnx import helper

    graph = model.graph
    consts = _const_values(model)
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}
    opset = next((o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')), 13)
    removed: set[int] = set()
    added: dict[int, list[Any]] = {}
    count = 0

    def only_consumer(name: str, op: str) -> Any:
        users = consumers.get(name, [])
        if len(users) != 1 or users[0].op_type != op or name in graph_outputs:
            return None
        return users[0]

    for concat in graph.node:
        if concat.op_type != 'Concat' or len(concat.input) != 2:
            continue
        axis = next((helper.get_attribute_value(a) for a in concat.attribute if a.name == 'axis'), None)
        if axis != 1:
            continue
        r1 = only_consumer(concat.output[0], 'Reshape')
        tr = r1 and only_consumer(r1.output[0], 'Transpose')
        r2 = tr and only_consumer(tr.output[0], 'Reshape')
        if r2 is None or r1.input[1] not in consts or r2.input[1] not in consts:
            continue
        s1, s2 = consts[r1.input[1]].tolist(), consts[r2.input[1]].tolist()
        perm = next((helper.get_attribute_value(a) for a in tr.attribute if a.name == 'perm'), None)
        if len(s1) != 5 or s1[1] != 2 or list(perm or []) != [0, 2, 1, 3, 4] or len(s2) != 4 or \
                min(s1) <= 0 or s2[1] != 2 * s1[2]:
            continue
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
    return count
