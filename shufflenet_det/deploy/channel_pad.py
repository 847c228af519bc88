"""Zero-pad channel counts of an ONNX graph where ONNX Runtime's blocked layout needs them (exact, deploy only).

ONNX Runtime's CPU provider runs convolutions in its blocked NCHWc layout (MLAS, vectorised direct kernels, blocks
of 8 channels with AVX2, 16 with AVX-512); a tensor whose channel count is not a multiple of the block leaves that
layout (a reorder to NCHW and back), and a convolution reading it falls back to the plain NCHW kernels. ShuffleNet has
such tensors in two places: the 58-channel middle of stage 2's branches in ShuffleNet V2 1.0x (and the odd widths of
other variants and searched blocks), and the 24-channel stem (conv1 -> max pool) before stage 2.

:func:`pad_channel_regions` widens them with channels that are exactly zero, so nothing changes numerically. A
*region* starts at an ordinary convolution (``group=1``) whose output is the padded tensor and follows it through
channel-wise operations - elementwise activations, max pooling, depthwise convolutions - up to the ordinary
convolutions that read it:

* the first conv gets extra output filters that are all zero, with zero bias: the padded channels are 0;
* an elementwise activation maps them to a constant (ReLU(0) = 0, Sigmoid(0) = 0.5: finite either way), max pooling
  of a constant plane is that constant, and a depthwise conv in the region gets zero kernels and zero bias for
  them: 0 again;
* the convolutions that end the region get zero weights on those input channels: they never reach their outputs.

Anything else reading a region tensor (a concatenation, a split, an addition, a graph output) leaves the region
unpadded, so the shapes outside every padded region stay as they were. Measured here (AMD EPYC, AVX-512, ONNX
Runtime 1.32, ORT_ENABLE_ALL, one thread, CPU time per call, NanoDet-Plus-m's network at 320x320): the branch
middles padded about 5 % faster than unpadded, the stem padded to 32 channels about 3 % on top; the extra
multiply-adds are a few percent. The ncnn export pads its own files instead (:mod:`.ncnn_pad`: ncnn's packing
wants multiples of 4 / 8 / 16, and the stem's 24 channels already pack by 8).
"""
from __future__ import annotations

from typing import Any

import numpy as np

#: Elementwise single-input ops allowed inside a region (padded channels stay finite).
ELEMENTWISE = ('Relu', 'Clip', 'LeakyRelu', 'HardSwish', 'HardSigmoid', 'Sigmoid')


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _pad(init: Any, axis: int, extra: int) -> None:
    """Append ``extra`` zeros along ``axis`` to the initializer ``init`` (in place, same name and dtype)."""
    from onnx import numpy_helper
    array = numpy_helper.to_array(init)
    zeros = np.zeros((*array.shape[:axis], extra, *array.shape[axis + 1:]), array.dtype)
    init.CopyFrom(numpy_helper.from_array(np.concatenate([array, zeros], axis), init.name))


def pad_channel_regions(model: Any, multiple: int = 4) -> int:
    """Pad every region of ``model`` (an ``onnx.ModelProto``, edited in place) whose width is not a multiple of
    ``multiple``; return how many were padded.

    A region (module docstring) is padded when every weight and bias in it is an initializer (one that other nodes
    share, as a simplifier's deduplicated zero biases, is copied for the region first), every tensor in it is read
    only by the region's operations or the ordinary convolutions that end it (as their data input), none is a graph
    output, and at least one convolution ends it.
    """
    import onnx

    if multiple < 1:
        raise ValueError(f'multiple must be >= 1, got {multiple}')
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}

    def init_of(node: Any, idx: int) -> Any:
        """The initializer feeding input ``idx`` of ``node``; None when absent or computed."""
        if len(node.input) <= idx or not node.input[idx]:
            return None
        return inits.get(node.input[idx])

    def has_computed_bias(node: Any) -> bool:
        return len(node.input) > 2 and bool(node.input[2]) and init_of(node, 2) is None

    def private(node: Any, idx: int) -> Any:
        """``init_of(node, idx)``, copied for this node first if other nodes use it too (e.g. deduplicated biases)."""
        init = init_of(node, idx)
        if init is None or len(consumers.get(init.name, [])) == 1:
            return init
        copy = graph.initializer.add()  # add(), not append(): append would store a copy of the message
        copy.CopyFrom(init)
        copy.name = f'{init.name}/padded_for/{node.name or node.output[0]}'
        inits[copy.name] = copy
        consumers[init.name].remove(node)
        consumers[copy.name] = [node]
        node.input[idx] = copy.name
        return copy

    def region(first: Any, width: int) -> tuple[list[Any], list[Any]] | None:
        """The depthwise convs inside the region that ``first`` starts and the convs that end it; None when the
        region cannot be padded."""
        depthwise: list[Any] = []
        ends: list[Any] = []
        tensors = [first.output[0]]
        while tensors:
            tensor = tensors.pop()
            users = consumers.get(tensor, [])
            if not users or tensor in graph_outputs:
                return None
            for node in users:
                if node.op_type in ELEMENTWISE or (node.op_type == 'MaxPool' and len(node.output) == 1):
                    tensors.append(node.output[0])
                    continue
                if node.op_type != 'Conv' or node.input[0] != tensor:
                    return None
                weight = init_of(node, 1)
                if weight is None or has_computed_bias(node):
                    return None
                group = _attr(node, 'group', 1)
                if group == width and list(weight.dims[:2]) == [width, 1]:  # first: a 1-channel one is depthwise
                    depthwise.append(node)
                    tensors.append(node.output[0])
                elif group == 1 and int(weight.dims[1]) == width:
                    ends.append(node)
                else:
                    return None
        return depthwise, ends

    count = 0
    for first in list(graph.node):
        if first.op_type != 'Conv' or _attr(first, 'group', 1) != 1 or has_computed_bias(first):
            continue
        weight = init_of(first, 1)
        if weight is None:
            continue
        width = int(weight.dims[0])
        extra = -(-width // multiple) * multiple - width
        found = region(first, width) if extra else None
        if found is None:
            continue
        depthwise, ends = found
        for node in (first, *depthwise):
            _pad(private(node, 1), 0, extra)
            bias = private(node, 2)
            if bias is not None:
                _pad(bias, 0, extra)
        for node in depthwise:
            for a in list(node.attribute):
                if a.name == 'group':
                    node.attribute.remove(a)
            node.attribute.append(onnx.helper.make_attribute('group', width + extra))
        for node in ends:
            _pad(private(node, 1), 1, extra)
        count += 1
    if count:
        del graph.value_info[:]  # intermediate shapes changed; ONNX Runtime infers them again
        onnx.checker.check_model(model)
    return count
