"""Reading and editing the ONNX graph around a quantization: the convolutions and their kinds, the post-processing
after the last convolutions, the nodes kept in float and why, the QDQ pairs removed so that a float layer stays
float, and the checks that a model is float (before) and which convolutions run in int8 (after)."""
from __future__ import annotations

import os
from typing import Any, Sequence

from .config import QuantConfig, QuantizationError, quantizable_op_types

#: Operators that only a quantized model holds (QDQ pairs, QOperator and integer kernels).
QUANTIZED_OPS = ('QuantizeLinear', 'DequantizeLinear', 'DynamicQuantizeLinear', 'QLinearConv', 'QLinearMatMul',
                 'ConvInteger', 'MatMulInteger')


def check_float_model(model: Any, source: str | os.PathLike = 'the model') -> None:
    """:class:`QuantizationError` naming ``source`` when the ``onnx.ModelProto`` already holds quantized operators
    (:data:`QUANTIZED_OPS`): quantizing it again would stack a second QDQ layer on the first, which ONNX Runtime
    cannot load."""
    found: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in QUANTIZED_OPS:
            found[node.op_type] = found.get(node.op_type, 0) + 1
    if found:
        raise QuantizationError(f'{str(source)!r} is already quantized (it holds '
                                + ', '.join(f'{n} {op}' for op, n in sorted(found.items()))
                                + ' nodes); quantize the float export of tools/deploy/export_onnx.py')


def _attr(node: Any, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            import onnx
            return onnx.helper.get_attribute_value(a)
    return default


def _conv_after(graph: Any) -> list[bool]:
    """Per node index: whether a Conv node is reachable from its outputs (nodes are in topological order)."""
    nodes = list(graph.node)
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for t in node.input:
            consumers.setdefault(t, []).append(i)
    conv_after = [False] * len(nodes)
    for i in range(len(nodes) - 1, -1, -1):
        nxt = [c for t in nodes[i].output for c in consumers.get(t, [])]
        conv_after[i] = any(nodes[c].op_type == 'Conv' or conv_after[c] for c in nxt)
    return conv_after


def postprocess_nodes(model: Any) -> list[str]:
    """Names of the nodes after the last convolutions: score activation, box decoding, top-k, NMS, output layout.

    Every non-Conv node from which no Conv is reachable. 8-bit tensors there would quantize box coordinates to a
    fraction of the input size (2.5 px steps over 640 px) and cost mAP at high IoU; it is a small share of the time.
    """
    conv_after = _conv_after(model.graph)
    return [n.name for i, n in enumerate(model.graph.node) if n.op_type != 'Conv' and not conv_after[i]]


def conv_nodes(model: Any) -> list[dict[str, Any]]:
    """Every Conv node: ``name``, ``kind`` (depthwise / pointwise / conv / grouped) and ``final`` (no Conv after it).

    ``model`` is an ``onnx.ModelProto`` (nodes in topological order, as ONNX requires).
    """
    graph = model.graph
    dims = {i.name: list(i.dims) for i in graph.initializer}
    conv_after = _conv_after(graph)
    out = []
    for i, node in enumerate(graph.node):
        if node.op_type != 'Conv':
            continue
        group = int(_attr(node, 'group', 1))
        w = dims.get(node.input[1]) if len(node.input) > 1 else None
        kernel = list(_attr(node, 'kernel_shape', w[2:] if w else []))
        if group > 1 and w is not None and w[1] == 1 and group == w[0]:
            kind = 'depthwise'
        elif group > 1:
            kind = 'grouped'
        elif kernel and all(k == 1 for k in kernel):
            kind = 'pointwise'
        else:
            kind = 'conv'
        out.append(dict(name=node.name, kind=kind, final=not conv_after[i]))
    return out


def resolve_exclusions(config: QuantConfig, model: Any) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The convolutions of ``model`` (:func:`conv_nodes`) and ``{node name: why}`` of the nodes kept in float:
    ``option``, ``final conv`` or ``postprocess``.

    ValueError for a named node that is not in the graph (with the graph's convolutions as a hint).
    """
    convs = conv_nodes(model)
    known = {n.name for n in model.graph.node}
    unknown = [n for n in config.exclude if n not in known]
    if unknown:
        hint = ', '.join(c['name'] for c in convs[:6])
        raise ValueError(f'nodes to keep in float (--exclude) {unknown} are not nodes of the model (its '
                         f'convolutions: {hint}, ...; list them with tools/deploy/quantize.py --list-nodes)')
    if config.op_types:
        present = {n.op_type for n in model.graph.node}
        if not present & set(config.op_types):
            raise ValueError(f'operator types to quantize (--op-types) {list(config.op_types)}: the model has no '
                             f'node of these types, nothing would be quantized; its quantizable types: '
                             f'{sorted(present & quantizable_op_types())}')
    why = dict.fromkeys(config.exclude, 'option')
    for c in convs:
        if config.exclude_final_convs and c['final']:
            why.setdefault(c['name'], 'final conv')
    if not config.quantize_postprocess:
        for name in postprocess_nodes(model):
            why.setdefault(name, 'postprocess')
    return convs, why


#: Single-input operators ONNX Runtime moves quantization through (QuantizeLinear is propagated backwards over
#: them, ReLU / Clip are absorbed into it): a float convolution's output must stay float up to the next other op.
PASS_THROUGH = ('Relu', 'Clip', 'Reshape', 'Unsqueeze', 'Squeeze', 'Transpose', 'Flatten', 'MaxPool', 'Slice',
                'Gather', 'Resize', 'Identity')


def keep_outputs_float(model: Any, names: Sequence[str]) -> int:
    """Remove the QuantizeLinear -> DequantizeLinear pairs on the outputs of the Conv nodes ``names``, in place.

    A convolution left out of the quantization but still between a DequantizeLinear and a QuantizeLinear is
    quantized again by ONNX Runtime when a session is created (its ``WeightBiasQuantization`` optimizer gives it
    per-tensor int8 weights and fuses it into a QLinearConv; its QDQ propagation first moves a QuantizeLinear back
    over reshapes and ReLUs): leaving a layer "in float" would change nothing, or make it worse. So the pairs on
    its output - directly or after :data:`PASS_THROUGH` operators - are removed: the convolution stays float, and
    so do the convolutions that read its output (their input is no longer dequantized; ONNX Runtime folds their
    int8 weights back to float). Returns the number of pairs removed.
    """
    wanted = set(names)
    nodes = list(model.graph.node)
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for t in n.input:
            consumers.setdefault(t, []).append(i)
    graph_outputs = {o.name for o in model.graph.output}
    drop: set[int] = set()
    for conv in nodes:
        if conv.op_type != 'Conv' or conv.name not in wanted:
            continue
        todo, seen = [conv.output[0]], set()
        while todo:
            y = todo.pop()
            if y in seen:
                continue
            seen.add(y)
            for qi in consumers.get(y, []):
                q = nodes[qi]
                if q.op_type in PASS_THROUGH and q.input[0] == y:
                    todo.append(q.output[0])
                    continue
                if q.op_type != 'QuantizeLinear' or qi in drop or q.output[0] in graph_outputs:
                    continue
                dqs = consumers.get(q.output[0], [])
                if any(nodes[d].op_type != 'DequantizeLinear' or nodes[d].output[0] in graph_outputs for d in dqs):
                    continue  # quantized values that leave the graph or feed a quantized op directly: keep
                for d in dqs:
                    for ui in consumers.get(nodes[d].output[0], []):
                        user = nodes[ui]
                        for k, t in enumerate(user.input):
                            if t == nodes[d].output[0]:
                                user.input[k] = y
                    drop.add(d)
                drop.add(qi)
    for i in sorted(drop, reverse=True):
        del model.graph.node[i]
    return sum(1 for i in drop if nodes[i].op_type == 'QuantizeLinear')


def quantized_convs(model: Any) -> list[str]:
    """Names of the Conv nodes of a QDQ model that run in int8: dequantized input and dequantized int8 weights (the
    pattern ONNX Runtime fuses into a QLinearConv; a Conv whose input is float runs in float)."""
    dq_out = {t for n in model.graph.node if n.op_type == 'DequantizeLinear' for t in n.output}
    return sorted(n.name for n in model.graph.node if n.op_type == 'Conv' and len(n.input) > 1
                  and n.input[0] in dq_out and n.input[1] in dq_out)


def grouped(why: dict[str, str]) -> dict[str, list[str]]:
    """``{node: reason}`` -> ``{reason: [nodes]}``."""
    out: dict[str, list[str]] = {}
    for name, reason in why.items():
        out.setdefault(reason, []).append(name)
    return out
