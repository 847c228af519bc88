"""Where an ncnn model spends its time, layer by layer, with the ncnn of the machine it runs on (torch-free).

ncnn's per-layer timer needs a build with ``NCNN_BENCHMARK``; the Python wheels have none. :func:`profile_ncnn`
times each layer on its own instead, in the real network's conditions:

1. the whole network runs once and every blob is extracted *as the network holds it* (``Extractor.extract(...,
   type=1)``: packed by 4 / 8 / 16 channels, fp16 or int8 storage, as the producing layer left it);
2. each layer becomes a network of its own - one ``Input`` per bottom blob and the layer's ``.param`` line with its
   weights cut from the ``.bin`` (:func:`.ncnn_file.read_ncnn`) - opened with the same options
   (:func:`.ncnn_param.load_net`), so ncnn converts its inputs' layout exactly as the whole network does;
3. the layer networks and the whole network - of every model profiled together, e.g. a model and its peer - are
   timed in interleaved rounds (the extraction only: the extractor and its inputs are set up before the clock
   starts). A layer that runs in place gets a copy of an input that is still
   held elsewhere (the whole network hands it the only reference), so the median time of that copy is subtracted.

The layer times add up to the whole network's time within a few per cent (:attr:`NcnnProfile.coverage` says how
closely, run by run), which is the check that the profile describes the network. Layer types are grouped as the ONNX
Runtime profile groups operators (``shufflenet_det.benchmark.ort_profile``): :data:`.timing.KINDS`.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .io import PathLike
from .ncnn_file import NcnnFormatError, NcnnLayer, read_ncnn
from .ncnn_param import PARAM_MAGIC, load_net, read_param
from .timing import KINDS, conv_floor

#: ncnn layer types per kind (the rest is ``other``: pooling, activations, element-wise ops, ...).
NCNN_CONV_LAYERS = frozenset({'Convolution', 'ConvolutionDepthWise', 'Convolution1D', 'Convolution3D',
                              'Deconvolution', 'DeconvolutionDepthWise', 'InnerProduct', 'Gemm', 'MatMul'})
NCNN_MOVE_LAYERS = frozenset({'Concat', 'Slice', 'Split', 'ShuffleChannel', 'Crop', 'Reshape', 'Permute', 'Flatten',
                              'Interp', 'Padding', 'Packing', 'Cast', 'Squeeze', 'ExpandDims', 'Tile', 'PixelShuffle',
                              'Reorg', 'DeepCopy', 'Noop'})


def ncnn_kind(layer_type: str) -> str:
    """The kind (:data:`KINDS`) of an ncnn layer type."""
    return KINDS[0] if layer_type in NCNN_CONV_LAYERS else KINDS[1] if layer_type in NCNN_MOVE_LAYERS else KINDS[2]


@dataclasses.dataclass
class NcnnProfile:
    """Median times (ms) of one model: the whole network and each layer (in ``.param`` order)."""

    param: str
    input_shape: tuple[int, int, int]  # (c, h, w)
    threads: int
    runs: int
    net_ms: float
    layers: list[tuple[str, str, float]]  # (name, type, ms)
    coverage: float  # sum of the layer medians / the whole network's median
    macs: dict[str, int] = dataclasses.field(default_factory=dict)  # layer name -> multiply-adds (known types)

    @property
    def conv_macs(self) -> Optional[int]:
        """Multiply-adds of the convolution layers; None when one of them is of a type not counted here."""
        convs = [n for n, t, _ in self.layers if ncnn_kind(t) == KINDS[0]]
        return sum(self.macs[n] for n in convs) if all(n in self.macs for n in convs) else None

    @property
    def conv_gmacs(self) -> Optional[float]:
        """The convolution layers' rate, 1e9 multiply-adds per second."""
        macs, ms = self.conv_macs, self.kind_ms(KINDS[0])
        return macs / (ms * 1e-3) / 1e9 if macs is not None and ms > 0 else None

    def kind_ms(self, kind: str) -> float:
        """Time of one of :data:`KINDS` (sum of its layers' medians)."""
        return sum(ms for _, t, ms in self.layers if ncnn_kind(t) == kind)

    @property
    def layer_ms(self) -> float:
        """The sum of the layers' medians."""
        return sum(ms for _, _, ms in self.layers)

    def by_type(self) -> dict[str, float]:
        """Time per layer type, slowest first."""
        out: dict[str, float] = {}
        for _, t, ms in self.layers:
            out[t] = out.get(t, 0.0) + ms
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def to_json(self, top: int) -> dict[str, Any]:
        slowest = sorted(self.layers, key=lambda r: -r[2])[:top]
        return dict(param=self.param, input_shape=list(self.input_shape), threads=self.threads, runs=self.runs,
                    net_ms=self.net_ms, layer_ms=self.layer_ms, coverage=self.coverage, conv_macs=self.conv_macs,
                    conv_gmacs_per_s=self.conv_gmacs,
                    kinds_ms={k: self.kind_ms(k) for k in KINDS}, by_type_ms=self.by_type(),
                    slowest_layers=[dict(layer=n, type=t, ms=ms, macs=self.macs.get(n)) for n, t, ms in slowest])


def layer_macs(layer: NcnnLayer, held: dict[str, Any]) -> Optional[int]:
    """Multiply-adds of one run of a convolution or fully connected layer (None for other types): its weight count
    (``6=weight_data_size``) times the output pixels (convolutions), the input pixels (deconvolutions) or the rows
    (``InnerProduct`` on a 2-D input)."""
    weights = layer.get_int(6)
    if layer.type in ('Convolution', 'ConvolutionDepthWise', 'Convolution1D', 'Convolution3D'):
        out = held[layer.tops[0]]
        return weights * out.w * (out.h if out.dims >= 2 else 1) * (out.d if out.dims == 4 else 1)
    if layer.type in ('Deconvolution', 'DeconvolutionDepthWise'):
        inp = held[layer.bottoms[0]]
        return weights * inp.w * inp.h
    if layer.type == 'InnerProduct':
        inp = held[layer.bottoms[0]]
        return weights * (inp.h if inp.dims == 2 else 1)
    return None


def _layer_net(layer: NcnnLayer, folder: Path, threads: int, fp16: bool) -> Any:
    """An ncnn network of ``layer`` alone: an ``Input`` per bottom blob, then its line; its weights from the
    ``.bin`` bytes read with the model."""
    inputs = [f'Input {layer.name}_in{i} 0 1 {blob}' for i, blob in enumerate(layer.bottoms)]
    blobs = len(set(layer.bottoms) | set(layer.tops))
    param, weights = folder / f'{len(os.listdir(folder))}.param', folder / f'{len(os.listdir(folder))}.bin'
    param.write_text('\n'.join([PARAM_MAGIC, f'{len(inputs) + 1} {blobs}', *inputs, layer.line]) + '\n')
    weights.write_bytes(b''.join(blob.data for blob in layer.blobs))
    return load_net(param, weights, threads, fp16, f'layer {layer.name!r} ({layer.type}) as a network of its own')


def _inplace(layer_type: str) -> bool:
    import ncnn
    made = ncnn.create_layer(layer_type)
    return bool(made is not None and made.support_inplace)


class _Prepared:
    """One model ready to time: its whole network and input, the blobs it holds, a network per layer, and the
    calls that time them (each returns seconds; index 0 the whole network)."""

    def __init__(self, param: PathLike, weights: PathLike, input_shape: Optional[Sequence[int]], threads: int,
                 fp16: bool, seed: int, folder: Path) -> None:
        import ncnn
        self.param, self.threads = str(param), threads
        self.info = read_param(param, 'the ncnn model')
        self.shape = _input_shape(self.info.input_shape, input_shape, self.param)
        try:
            model = read_ncnn(param, weights)
        except NcnnFormatError as exc:
            raise ValueError(str(exc)) from None
        self.net = load_net(self.param, weights, threads, fp16)
        self.data = np.random.default_rng(seed).random(self.shape, dtype=np.float32)
        self.mat = ncnn.Mat(self.data)  # does not own ``data``: both stay alive with this object
        self.extractor = self.net.create_extractor()  # holds the blobs below
        self.extractor.input(self.info.input_blob, self.mat)
        self.held: dict[str, Any] = {}
        for layer in model.layers:
            for blob in layer.tops:
                ret, self.held[blob] = self.extractor.extract(blob, 1)
                if ret != 0:
                    raise ValueError(f'{self.param!r}: ncnn cannot compute blob {blob!r} of layer {layer.name!r}')
        self.layers = [layer for layer in model.layers if layer.type != 'Input']
        nets = [_layer_net(layer, folder, threads, fp16) for layer in self.layers]
        inplace = {t: _inplace(t) for t in {layer.type for layer in self.layers}}
        self.calls: list[Callable[[], float]] = [self.run_net] + [functools.partial(self.run_layer, lay, n)
                                                                  for lay, n in zip(self.layers, nets)]
        self.copies: dict[int, Callable[[], float]] = {
            i + 1: functools.partial(self.copy_of_input, lay) for i, lay in enumerate(self.layers)
            if inplace[lay.type] and len(lay.bottoms) == 1}
        self.times: list[list[float]] = [[] for _ in self.calls]
        self.copy_times: dict[int, list[float]] = {i: [] for i in self.copies}

    def run_net(self) -> float:
        ex = self.net.create_extractor()
        ex.input(self.info.input_blob, self.mat)
        t0 = time.perf_counter()
        for blob in self.info.output_blobs:
            ex.extract(blob, 1)
        return time.perf_counter() - t0

    def run_layer(self, layer: NcnnLayer, layer_net: Any) -> float:
        ex = layer_net.create_extractor()
        for blob in layer.bottoms:
            ex.input(blob, self.held[blob])
        t0 = time.perf_counter()
        for blob in layer.tops:
            ex.extract(blob, 1)
        return time.perf_counter() - t0

    def copy_of_input(self, layer: NcnnLayer) -> float:
        t0 = time.perf_counter()
        self.held[layer.bottoms[0]].clone()
        return time.perf_counter() - t0

    def time_block(self, n: int, warm: int) -> None:
        """``warm`` untimed then ``n`` timed calls of the network and of each layer (and the input copies of the
        in-place layers)."""
        for i, call in enumerate(self.calls):
            for _ in range(warm):
                call()
            self.times[i].extend(call() for _ in range(n))
            if i in self.copies:
                self.copy_times[i].extend(self.copies[i]() for _ in range(n))

    def profile(self, runs: int) -> NcnnProfile:
        medians = [statistics.median(t) * 1000.0 for t in self.times]
        for i, copied in self.copy_times.items():
            medians[i] = max(0.0, medians[i] - statistics.median(copied) * 1000.0)
        layers = [(layer.name, layer.type, ms) for layer, ms in zip(self.layers, medians[1:])]
        macs = {layer.name: m for layer in self.layers if (m := layer_macs(layer, self.held)) is not None}
        return NcnnProfile(self.param, self.shape, self.threads, runs, medians[0], layers,
                           sum(medians[1:]) / medians[0], macs)


def profile_ncnn_models(models: Sequence[tuple[PathLike, PathLike]], input_shape: Optional[Sequence[int]],
                        threads: int = 1, runs: int = 100, warmup: int = 10, rounds: int = 5, fp16: bool = True,
                        seed: int = 0) -> list[NcnnProfile]:
    """Profile ncnn models (``(param, bin)`` pairs) layer by layer (module docstring), all in the same interleaved
    rounds, on the same random input (``seed``). ``input_shape`` ``(c, h, w)`` where a ``.param`` leaves it open
    (pnnx writes no shape); ``fp16`` False turns ncnn's fp16 storage and arithmetic off (as the runner's
    ``--no-fp16``). ValueError naming the file or argument for what cannot be profiled."""
    if runs < 1 or warmup < 0 or not 1 <= rounds <= runs or threads < 1:
        raise ValueError(f'runs must be >= 1, warmup >= 0, rounds in [1, runs] and threads >= 1; got runs={runs}, '
                         f'warmup={warmup}, rounds={rounds}, threads={threads}')
    with tempfile.TemporaryDirectory(prefix='ncnn_profile_') as tmp:
        prepared = [_Prepared(param, weights, input_shape, threads, fp16, seed, Path(tmp))
                    for param, weights in models]
    for n in [runs // rounds + (1 if r < runs % rounds else 0) for r in range(rounds)]:
        for model in prepared:
            model.time_block(n, max(1, warmup // rounds))
    return [model.profile(runs) for model in prepared]


def profile_ncnn(param: PathLike, weights: PathLike, input_shape: Optional[Sequence[int]], threads: int = 1,
                 runs: int = 100, warmup: int = 10, rounds: int = 5, fp16: bool = True,
                 seed: int = 0) -> NcnnProfile:
    """:func:`profile_ncnn_models` of one model."""
    return profile_ncnn_models([(param, weights)], input_shape, threads, runs, warmup, rounds, fp16, seed)[0]


def _input_shape(fixed: Sequence[Optional[int]], given: Optional[Sequence[int]], param: str) -> tuple[int, int, int]:
    """The profiled ``(c, h, w)``: the ``.param``'s fixed dimensions, ``given`` for the open ones; ValueError when
    one is open and not given, or ``given`` contradicts a fixed one."""
    if given is None:
        if any(d is None for d in fixed):
            raise ValueError(f'{param!r} does not fix its input shape (pnnx writes none): give --shape C H W')
        return tuple(int(d) for d in fixed)  # type: ignore[return-value, arg-type]
    if len(given) != 3 or min(given) < 1:
        raise ValueError(f'--shape must be three positive integers C H W, got {list(given)}')
    for name, d, g in zip('CHW', fixed, given):
        if d is not None and d != g:
            raise ValueError(f'--shape {" ".join(map(str, given))}: {param!r} fixes the input {name} to {d}')
    return int(given[0]), int(given[1]), int(given[2])


def ncnn_floor(model: NcnnProfile, peer: NcnnProfile) -> float:
    """:func:`.timing.conv_floor` of two profiles: the model's network time and its convolutions' share of its
    layer time, over the peer's network time."""
    return conv_floor(model.net_ms, model.kind_ms(KINDS[0]), model.layer_ms, peer.net_ms)


def format_ncnn_profile(p: NcnnProfile, top: int) -> str:
    """The profile as text: totals, kinds, layer types and the slowest layers."""
    c, h, w = p.input_shape
    lines = [f'{p.param} ({c}x{h}x{w}, {p.threads} thread(s), {p.runs} runs): network {p.net_ms:.3f} ms (median), '
             f'layers {p.layer_ms:.3f} ms ({100.0 * p.coverage:.0f} % of the network)']
    for kind in KINDS:
        ms = p.kind_ms(kind)
        line = f'  {kind:<14} {ms:8.3f} ms {100.0 * ms / p.layer_ms if p.layer_ms else 0.0:5.1f} %'
        if kind == KINDS[0] and p.conv_gmacs is not None:
            line += f'   {p.conv_macs / 1e6:.1f} M MAC at {p.conv_gmacs:.1f} GMAC/s'  # type: ignore[operator]
        lines.append(line)
    lines.append('  by layer type:')
    for t, ms in p.by_type().items():
        lines.append(f'    {t:<24} {ncnn_kind(t):<14} {ms:8.3f} ms')
    if top > 0:
        lines.append(f'  slowest {min(top, len(p.layers))} layers:')
        for name, t, ms in sorted(p.layers, key=lambda r: -r[2])[:top]:
            lines.append(f'    {ms:8.3f} ms  {t:<22} {name}')
    return '\n'.join(lines)
