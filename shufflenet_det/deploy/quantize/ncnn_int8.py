"""ncnn int8 models written here, the way ncnn's own ``ncnn2table`` + ``ncnn2int8`` write them (those tools are C++
only, not in the PyPI wheel): the layers that can run in int8, their weight scales, the activation (bottom blob)
scales calibrated on the fp32 ncnn model, and the int8 ``.param`` / ``.bin``.

What ncnn reads (src/layer/convolution.cpp, convolutiondepthwise.cpp, innerproduct.cpp ``load_model``; written as in
tools/quantize/ncnn2int8.cpp and tools/modelwriter.h): parameter ``8=int8_scale_term`` - 2 for Convolution and
InnerProduct (one weight scale per output channel), 1 for ConvolutionDepthWise (one per group) - then in the ``.bin``:
the weights as int8 with the flag 0x000D4B38, the bias unchanged (raw float32), ``weight_data_int8_scales``
(``num_output`` or ``group`` raw floats) and ``bottom_blob_int8_scales`` (one raw float). A weight ``w`` of a channel
with scale ``s`` is stored as ``clamp(round(w * s), -127, 127)``; ``s = 127 / max|w|`` over the channel (per group for
depthwise), except 3x3 stride-1 dilation-1 Convolution weights, which ncnn2table quantizes to 6 bits (``31 / max|w|``:
its comment "int8 winograd F43 needs weight data to use 6bit quantization"). The bottom blob scale is
``127 / threshold``, the threshold from the calibration: ``minmax`` (max |x|), ``percentile`` (that percentile of
|x|, 2048-bin histogram as ONNX Runtime's calibrator) or ``entropy`` (ncnn2table's KL method: 2048-bin histogram of the
non-zero |x|, the 128-bin quantized distribution closest in KL divergence). The requantize fusion of ncnn2int8
(``int8_scale_term`` + 100, int8 outputs between two int8 convolutions) is not written: every int8 layer dequantizes
its output to float, which ncnn runs as well.
"""
from __future__ import annotations

import copy
import os
from typing import Any, Callable, Sequence

import numpy as np

from ...runtime.ncnn_file import TAG_FP16, TAG_FP32, NcnnLayer, NcnnModelFile, WeightBlob
from ...runtime.ncnn_param import extract_blobs, load_net
from .config import QuantConfig

#: The layer types quantized, and the ``int8_scale_term`` ncnn2int8 gives each.
INT8_SCALE_TERM = {'Convolution': 2, 'ConvolutionDepthWise': 1, 'InnerProduct': 2}
HISTOGRAM_BINS = 2048
KL_TARGET_BINS = 128


def weight_groups(layer: NcnnLayer) -> int:
    """How many weight scales the layer gets: output channels (Convolution, InnerProduct) or groups (depthwise)."""
    return layer.get_int(7, 1) if layer.type == 'ConvolutionDepthWise' else layer.get_int(0)


def layer_kind(layer: NcnnLayer) -> str:
    """``depthwise`` / ``grouped`` / ``pointwise`` / ``conv`` / ``fc``, as :func:`.graph.conv_nodes` names them."""
    if layer.type == 'InnerProduct':
        return 'fc'
    if layer.type == 'ConvolutionDepthWise':
        group, out = layer.get_int(7, 1), layer.get_int(0)
        per_group_in = layer.get_int(6) // max(1, out * layer.get_int(1) * layer.get_int(11, layer.get_int(1)))
        return 'depthwise' if group == out and per_group_in == 1 else 'grouped'
    kw = layer.get_int(1)
    return 'pointwise' if kw == 1 and layer.get_int(11, kw) == 1 else 'conv'


def weight_bits(layer: NcnnLayer) -> int:
    """6 for the 3x3 stride-1 dilation-1 Convolutions that ncnn2table quantizes to 6 bits (winograd F43), else 8."""
    if layer.type != 'Convolution':
        return 8
    kw, dw, sw = layer.get_int(1), layer.get_int(2, 1), layer.get_int(3, 1)
    kh, dh, sh = layer.get_int(11, kw), layer.get_int(12, dw), layer.get_int(13, sw)
    return 6 if (kw, kh, dw, dh, sw, sh) == (3, 3, 1, 1, 1, 1) else 8


def _is_candidate(layer: NcnnLayer) -> bool:
    return (layer.type in INT8_SCALE_TERM and not layer.get_int(8) and not layer.get_int(19) and bool(layer.blobs)
            and layer.blobs[0].tag in (TAG_FP32, TAG_FP16))


def quantizable_layers(model: NcnnModelFile) -> list[dict[str, Any]]:
    """The float Convolution / ConvolutionDepthWise / InnerProduct layers: ``name``, ``type``, ``kind``, ``bottom``
    (the blob calibrated) and ``final`` (no such layer after it: a head's last layers)."""
    consumers: dict[str, list[NcnnLayer]] = {}
    for lay in model.layers:
        for b in lay.bottoms:
            consumers.setdefault(b, []).append(lay)
    after: dict[str, bool] = {}
    for lay in reversed(model.layers):  # layers are in topological order
        nxt = [c for t in lay.tops for c in consumers.get(t, [])]
        after[lay.name] = any(_is_candidate(c) or after.get(c.name, False) for c in nxt)
    return [dict(name=lay.name, type=lay.type, kind=layer_kind(lay), bottom=lay.bottoms[0], final=not after[lay.name])
            for lay in model.layers if _is_candidate(lay)]


def resolve_layers(config: QuantConfig, model: NcnnModelFile) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The quantizable layers and ``{layer: why}`` of those kept in float (``option``, ``final conv``); ValueError
    for a name in ``config.exclude`` that is not a quantizable layer of the model."""
    layers = quantizable_layers(model)
    names = {lay['name'] for lay in layers}
    unknown = [n for n in config.exclude if n not in names]
    if unknown:
        hint = ', '.join(lay['name'] for lay in layers[:6])
        raise ValueError(f'layers to keep in float (--exclude) {unknown} are not Convolution / ConvolutionDepthWise / '
                         f'InnerProduct layers of the model (its first: {hint}, ...; list them with --list-nodes)')
    why = dict.fromkeys(config.exclude, 'option')
    for lay in layers:
        if config.exclude_final_convs and lay['final']:
            why.setdefault(lay['name'], 'final conv')
    return layers, why


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round to nearest, halves away from zero (C's ``round``, which ncnn's ``float2int8`` uses)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def weight_scales(layer: NcnnLayer) -> np.ndarray:
    """``limit / max|w|`` per output channel (group for depthwise), limit 127 (31 for 6-bit layers); 1 where the
    channel's weights are all 0."""
    w = layer.blobs[0].values().astype(np.float32).reshape(weight_groups(layer), -1)
    absmax = np.abs(w).max(axis=1)
    limit = np.float32(31 if weight_bits(layer) == 6 else 127)
    return np.where(absmax > 0, limit / np.where(absmax > 0, absmax, 1), np.float32(1)).astype(np.float32)


def quantize_weights(layer: NcnnLayer, scales: np.ndarray) -> np.ndarray:
    """The layer's float weights as int8 with the per-group ``scales``."""
    w = layer.blobs[0].values().astype(np.float32).reshape(len(scales), -1)
    return np.clip(round_half_away(w * scales[:, None]), -127, 127).astype(np.int8).ravel()


def dequantized_weights(layer: NcnnLayer) -> np.ndarray:
    """The float weights an int8 layer stands for: ``int8 / scale`` of its group (flat, in the file's order)."""
    scales = layer.blobs[2 if layer.get_int(5 if layer.type != 'InnerProduct' else 1) else 1].values()
    q = layer.blobs[0].values().astype(np.float32).reshape(len(scales), -1)
    return (q / scales[:, None]).ravel()


def quantize_layer(layer: NcnnLayer, bottom_scale: float) -> dict[str, Any]:
    """Turn ``layer`` (in place) into ncnn's int8 form; returns what was written."""
    scales = weight_scales(layer)
    blobs = [WeightBlob.int8(quantize_weights(layer, scales))] + layer.blobs[1:]
    layer.blobs = blobs + [WeightBlob.raw(scales), WeightBlob.raw(np.asarray([bottom_scale], np.float32))]
    layer.set_param(8, INT8_SCALE_TERM[layer.type])
    return dict(name=layer.name, type=layer.type, kind=layer_kind(layer), weight_bits=weight_bits(layer),
                int8_scale_term=INT8_SCALE_TERM[layer.type], weight_scales=int(scales.size),
                bottom_blob_scale=float(bottom_scale))


def quantize_model(model: NcnnModelFile, bottom_scales: dict[str, float]) -> tuple[NcnnModelFile, list[dict[str, Any]]]:
    """A copy of ``model`` with the layers named in ``bottom_scales`` (layer -> its bottom blob scale) in int8."""
    out = copy.deepcopy(model)
    done = [quantize_layer(out.layer(name), scale) for name, scale in bottom_scales.items()]
    return out, done


def blob_scale(threshold: float) -> float:
    """ncnn's bottom blob scale ``127 / threshold`` (1 for a blob that is 0 on every calibration image)."""
    return 127.0 / threshold if threshold > 0 else 1.0


def kl_threshold(histogram: np.ndarray, absmax: float) -> float:
    """ncnn2table's ``quantize_KL`` threshold of one blob from its ``HISTOGRAM_BINS``-bin histogram of |x| on
    ``[0, absmax]``: the bin count ``t`` >= 128 whose clipped distribution is closest (KL divergence, eps 1e-4) to its
    128-bin quantized and re-expanded copy; threshold ``(t + 0.5) * absmax / bins``."""
    total = float(histogram.sum())
    if total <= 0 or absmax <= 0:
        return float(absmax)
    p_all = histogram.astype(np.float64) / total
    eps, target = 1e-4, KL_TARGET_BINS
    cum = np.concatenate([[0.0], np.cumsum(p_all)])
    best, best_t = np.inf, target
    for t in range(target, HISTOGRAM_BINS):
        clip = p_all[:t] + eps
        clip[t - 1] += p_all[t:].sum()
        width = t / target
        edges = np.arange(target + 1) * width
        lo = np.floor(edges).astype(int)
        cum_at = cum[lo] + (edges - lo) * p_all[np.minimum(lo, HISTOGRAM_BINS - 1)]  # mass of [0, edge)
        density = np.diff(cum_at) / width
        # the quantized density spread back over the t bins: mass of each unit bin [k, k+1) under it
        k = np.arange(t + 1, dtype=np.float64)
        j = np.minimum((k // width).astype(int), target - 1)
        g = np.concatenate([[0.0], np.cumsum(density * width)])[j] + density[j] * (k - j * width)
        expand = np.diff(g) + eps
        kl = float(np.sum(clip * np.log(clip / expand)))
        if kl < best:
            best, best_t = kl, t
    return (best_t + 0.5) * absmax / HISTOGRAM_BINS


def _percentile_threshold(histogram: np.ndarray, absmax: float, percentile: float) -> float:
    cdf = np.cumsum(histogram) / max(1, histogram.sum())
    idx = int(np.searchsorted(cdf, percentile / 100.0))
    return float(min(idx + 1, HISTOGRAM_BINS) * absmax / HISTOGRAM_BINS)


def calibrate(run_blobs: Callable[[np.ndarray, Sequence[str]], list[np.ndarray]], tensors: Sequence[np.ndarray],
              blobs: Sequence[str], method: str = 'minmax', percentile: float = 99.999) -> dict[str, float]:
    """Threshold (the |x| mapped to 127) of every blob in ``blobs`` over the calibration ``tensors``.

    ``run_blobs(x, names)`` runs the fp32 model on one input and returns those blobs. ``minmax`` reads each image
    once; ``percentile`` and ``entropy`` a second time for the histograms on ``[0, max|x|]``.
    """
    names = list(dict.fromkeys(blobs))
    absmax = dict.fromkeys(names, 0.0)
    for x in tensors:
        for n, v in zip(names, run_blobs(x, names)):
            absmax[n] = max(absmax[n], float(np.abs(v).max()) if v.size else 0.0)
    if method == 'minmax':
        return absmax
    hist = {n: np.zeros(HISTOGRAM_BINS, np.int64) for n in names}
    for x in tensors:
        for n, v in zip(names, run_blobs(x, names)):
            a = np.abs(v.ravel())
            if method == 'entropy':
                a = a[a != 0]  # ncnn2table skips exact zeros (ReLU outputs)
            if absmax[n] > 0 and a.size:
                idx = np.minimum((a / absmax[n] * HISTOGRAM_BINS).astype(np.int64), HISTOGRAM_BINS - 1)
                hist[n] += np.bincount(idx, minlength=HISTOGRAM_BINS)
    if method == 'entropy':
        return {n: kl_threshold(hist[n], absmax[n]) for n in names}
    if method == 'percentile':
        return {n: _percentile_threshold(hist[n], absmax[n], percentile) for n in names}
    raise ValueError(f"calibration method must be 'minmax', 'percentile' or 'entropy', got {method!r}")


def fp32_blob_runner(param: str | os.PathLike, bin_path: str | os.PathLike, input_blob: str, threads: int = 1
                     ) -> Callable[[np.ndarray, Sequence[str]], list[np.ndarray]]:
    """``run_blobs(x, names)`` for :func:`calibrate`: the fp32 ncnn model (fp16 storage and arithmetic off) on one
    ``(1, 3, H, W)`` input, the named blobs extracted."""
    import ncnn
    net = load_net(param, bin_path, threads, fp16=False)

    def run(x: np.ndarray, names: Sequence[str]) -> list[np.ndarray]:
        chw = np.ascontiguousarray(x[0], dtype=np.float32)  # ncnn.Mat(chw) reads this memory: keep it alive
        try:  # every intermediate blob kept: several are extracted
            return extract_blobs(net, {input_blob: ncnn.Mat(chw)}, names, param, keep_intermediate=True)
        except RuntimeError as exc:
            raise ValueError(str(exc)) from None
    return run  # the closure holds the net
