"""Zero-pad channel counts of an ncnn model where ncnn's packed layouts need them (exact, deploy only).

ncnn stores a blob of ``c`` channels packed by 16 (AVX-512), 8 (AVX) or 4 (SSE, NEON) when ``c`` is a multiple of
that, and unpacked otherwise; its packed kernels are the fast ones. The 58-channel middles of ShuffleNet V2 1.0x's
stage-2 branches (and the odd widths of other variants and searched blocks) fall to the unpacked ones: measured with
``python -m shufflenet_det.runtime ncnn-profile`` (AMD EPYC, AVX-512, 1 thread), lite-m's unpacked 3x3 depthwise
convolutions ran at 4.7 GMAC/s against 18 GMAC/s for the packed-by-16 ones, its unpacked 1x1 at 39 against 50.

:func:`pad_ncnn_regions` is the ncnn counterpart of :func:`.channel_pad.pad_channel_regions` (the ONNX rewrite), on
the ``.param`` / ``.bin`` that pnnx wrote (:mod:`shufflenet_det.runtime.ncnn_file`). A *region* starts at a
``Convolution`` with ``group`` 1 whose output is the padded blob, and follows it through channel-wise layers -
activations, pooling, ``ConvolutionDepthWise`` with one group per channel, and the ``Split`` layers by which ncnn
shares a blob - up to the ``Convolution`` layers (``group`` 1) that read it:

* the first convolution gets extra output filters that are all zero, with zero bias: the padded channels are
  0, and its fused activation maps them to a constant;
* an activation or a pooling layer keeps them finite and constant, and a depthwise convolution in the region gets
  zero kernels and bias for them;
* the convolutions that end the region get zero weights on those input channels: they never reach an output.

Anything else reading a region blob (a concatenation, a slice, an addition, a graph output) leaves the region
unpadded, so every blob outside the padded regions keeps its shape. Quantized (int8) layers are left alone.
"""
from __future__ import annotations

import numpy as np

from ..runtime.ncnn_file import TAG_FP16, TAG_FP32, NcnnLayer, NcnnModelFile, WeightBlob, align4

#: Single-input layers that act on each channel alone (their padded channels stay finite).
CHANNELWISE = frozenset({'ReLU', 'Clip', 'Sigmoid', 'HardSigmoid', 'HardSwish', 'Swish', 'Mish', 'TanH', 'ELU',
                         'Pooling'})
#: The channel multiple of the exports: ncnn packs fp32 by 4 on Arm (NEON) and fp16 by 8 (Armv8.2), by 8 with AVX
#: and by 16 with AVX-512. 8 serves all but the last, where padding to 16 cost more (the extra multiply-adds) than
#: it gained: lite-m's 58 -> 64 and 116 -> 120 made its network 2-4 % faster here, 16 (with 24 -> 32 and
#: 116 -> 128) about 2 % slower than 8 (``ncnn-profile``, AMD EPYC, AVX-512).
NCNN_PAD_MULTIPLE = 8


def _tagged(values: np.ndarray, tag: int) -> WeightBlob:
    """A tagged weight blob of ``values`` in the storage ``tag`` of the blob it replaces (fp32 or fp16)."""
    import struct
    if tag == TAG_FP16:
        body = np.ascontiguousarray(values, '<f2').ravel().tobytes()
        body += b'\0' * (align4(len(body)) - len(body))
    else:
        body = np.ascontiguousarray(values, '<f4').ravel().tobytes()
    return WeightBlob(values.size, True, struct.pack('<I', tag) + body)


def _plain_float(layer: NcnnLayer) -> bool:
    """A float layer whose weights are fp32 or fp16 (not quantized, not an int8 layer, not dynamic weights)."""
    return (not layer.get_int(8) and not layer.get_int(19) and bool(layer.blobs)
            and layer.blobs[0].tag in (TAG_FP32, TAG_FP16))


def _is_conv(layer: NcnnLayer) -> bool:
    return layer.type == 'Convolution' and layer.get_int(7, 1) == 1 and _plain_float(layer)


def _is_depthwise(layer: NcnnLayer, channels: int) -> bool:
    return (layer.type == 'ConvolutionDepthWise' and layer.get_int(7, 1) == channels == layer.get_int(0)
            and _plain_float(layer))


def _region(model: NcnnModelFile, start: NcnnLayer, consumers: dict[str, list[NcnnLayer]],
            outputs: set[str]) -> tuple[list[NcnnLayer], list[NcnnLayer]] | None:
    """The channel-wise layers and the ending convolutions of the region that ``start`` begins, or None when a blob
    of it is read by anything else or is a graph output, or no convolution ends it."""
    channels = start.get_int(0)
    inner: list[NcnnLayer] = []
    ends: list[NcnnLayer] = []
    blobs = [start.tops[0]]
    while blobs:
        blob = blobs.pop()
        if blob in outputs or not consumers.get(blob):
            return None
        for layer in consumers[blob]:
            if _is_conv(layer) and len(layer.bottoms) == 1:
                if layer not in ends:
                    ends.append(layer)
            elif layer.type == 'Split' or (layer.type in CHANNELWISE and len(layer.bottoms) == 1) or \
                    (_is_depthwise(layer, channels) and len(layer.bottoms) == 1):
                if layer not in inner:
                    inner.append(layer)
                    blobs.extend(layer.tops)
            else:
                return None
    return (inner, ends) if ends else None


def _pad_rows(blob: WeightBlob, rows: int, extra: int) -> WeightBlob:
    """Append ``extra`` zero rows to a tagged weight blob of ``rows`` rows (output filters / depthwise kernels)."""
    values = blob.values().reshape(rows, -1)
    return _tagged(np.concatenate([values, np.zeros((extra, values.shape[1]), np.float32)]), blob.tag or TAG_FP32)


def pad_ncnn_regions(model: NcnnModelFile, multiple: int = NCNN_PAD_MULTIPLE) -> int:
    """Pad every region (module docstring) of ``model`` (edited in place: lines and weight blobs) whose width is
    not a multiple of ``multiple``; return how many were padded."""
    consumers: dict[str, list[NcnnLayer]] = {}
    produced: set[str] = set()
    for layer in model.layers:
        produced.update(layer.tops)
        for blob in layer.bottoms:
            consumers.setdefault(blob, []).append(layer)
    outputs = {b for b in produced if b not in consumers}
    padded = 0
    for start in model.layers:
        if not _is_conv(start) or len(start.tops) != 1:
            continue
        channels = start.get_int(0)
        extra = -channels % multiple
        if not extra:
            continue
        found = _region(model, start, consumers, outputs)
        if found is None:
            continue
        inner, ends = found
        wide = channels + extra
        start.blobs[0] = _pad_rows(start.blobs[0], channels, extra)
        if start.get_int(5):
            start.blobs[1] = WeightBlob.raw(np.concatenate([start.blobs[1].values(), np.zeros(extra, np.float32)]))
        start.set_param(0, wide)
        start.set_param(6, start.blobs[0].count)
        for layer in inner:
            if layer.type != 'ConvolutionDepthWise':
                continue
            layer.blobs[0] = _pad_rows(layer.blobs[0], channels, extra)
            if layer.get_int(5):
                layer.blobs[1] = WeightBlob.raw(np.concatenate([layer.blobs[1].values(),
                                                                 np.zeros(extra, np.float32)]))
            layer.set_param(0, wide)
            layer.set_param(7, wide)
            layer.set_param(6, layer.blobs[0].count)
        for layer in ends:
            outs = layer.get_int(0)
            weights = layer.blobs[0].values().reshape(outs, channels, -1)
            zeros = np.zeros((outs, extra, weights.shape[2]), np.float32)
            layer.blobs[0] = _tagged(np.concatenate([weights, zeros], axis=1), layer.blobs[0].tag or TAG_FP32)
            layer.set_param(6, layer.blobs[0].count)
        padded += 1
    return padded
