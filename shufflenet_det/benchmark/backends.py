"""The backends of the benchmark: one builder function per name, and the peer models of other projects.

A builder takes a :class:`Subject` (one model at one input size, with its scratch folder) and returns a
:class:`Prepared`: a no-argument callable that the driver times in rounds with the other backends, or statistics
already measured elsewhere (ncnn, timed by the torch-free runtime in a child process). It raises
:class:`Unavailable` when the backend cannot run here (the reason goes into the row; nothing is emulated).
:data:`BACKENDS` maps every name to its builder:

===================  ===================================================================================
``torch-plain``      PyTorch eager, NCHW, BatchNorm kept - the torchvision formulation (baseline)
``torch-folded``     eager, BN folded into the convolutions (``switch_to_deploy``)
``torch-cl``         eager, BN folded, channels_last tensors, ``inference_mode``
``torch-jit``        BN folded, TorchScript trace + freeze + ``optimize_for_inference`` (oneDNN)
``torch-compile``    BN folded, channels_last, ``torch.compile`` (opt-in: compiling takes minutes on 2 cores)
``ort-plain``        ONNX Runtime (CPU) on the plain export: BN kept, no graph simplification (baseline)
``ort-deploy``       ONNX Runtime on the deploy export: BN folded, onnxslim, the shuffle rewrites, channel padding
``ort-int8``         ONNX Runtime on the static int8 (QDQ) quantization of the deploy export (``deploy.quantize``)
``ort-raw``          detectors: ONNX Runtime on the deploy export without NMS - the network alone, up to the raw head
                     tensors (post-processing excluded): what a bare backbone export is compared with
``ncnn``             ncnn (pnnx export, BN folded, channel padding), timed by the runtime's ncnn runner in a
                     torch-free child
``ort-cuda``         ONNX Runtime CUDA provider on the deploy export (when the provider is available)
``cuda-fp32/fp16``   PyTorch on the GPU, BN folded, channels_last (when a CUDA device is present)
===================  ===================================================================================

Peer mode (:mod:`.peer_files`) adds rows that are not backends of their own (not in :data:`BACKENDS`):

===================  ===================================================================================
``ort-peer``         a peer ONNX file (model ``peer:<file stem>``) in ONNX Runtime with the session options of
                     ``ort-deploy`` / ``ort-raw`` (:func:`ort_session_of`), in the same rounds as them
``ncnn-peer``        a peer ncnn ``.param`` / ``.bin`` pair, timed in the child process of the partner's ``ncnn``
                     row with the same ncnn options, interleaved with it in rounds (:func:`ncnn`)
``ncnn-raw``         detectors with an ncnn peer: the partner's ncnn network alone (raw head tensors, no numpy
                     post-processing), timed in the same child rounds: what ``ncnn-peer`` is compared with
===================  ===================================================================================

Detectors are timed from the normalised input tensor to the final detections: mmdet's ``predict`` for the PyTorch
rows, the graph with NMS for ONNX Runtime, the raw head plus the numpy post-processing for ncnn.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..utils.build import eval_copy, switch_to_deploy
from ..utils.predict import is_detector, predict_fn
from .peer_files import NCNN_RAW, PeerFile

CPU_BACKENDS = ('torch-plain', 'torch-folded', 'torch-cl', 'torch-jit', 'ort-plain', 'ort-deploy', 'ort-raw',
                'ort-int8', 'ncnn')
GPU_BACKENDS = ('ort-cuda', 'cuda-fp32', 'cuda-fp16')
OPTIONAL_BACKENDS = ('torch-compile',)
ALL_BACKENDS = CPU_BACKENDS + OPTIONAL_BACKENDS + GPU_BACKENDS
DEFAULT_BACKENDS = CPU_BACKENDS + GPU_BACKENDS
#: The rows every other row of the same model and size is compared with.
EAGER_BASELINE, ORT_BASELINE = 'torch-plain', 'ort-plain'
#: The candidates of the summary's "best deploy path" and "best PyTorch path".
DEPLOY_BACKENDS = ('ort-deploy', 'ncnn', 'ort-cuda')
EAGER_BACKENDS = ('torch-folded', 'torch-cl', 'torch-jit', 'torch-compile')


class Unavailable(Exception):
    """A backend or peer model that cannot run here (the reason is reported, nothing is faked)."""


@dataclasses.dataclass
class Subject:
    """One model at one input size: what every backend builder works on.

    ``x`` is the normalised input batch; ``runs`` / ``warmup`` / ``rounds`` are only used by backends timed outside
    this process (ncnn, :func:`ncnn`); exports are cached per kind in ``workdir``. ``ncnn_peer``: a peer ncnn model
    that the ``ncnn`` backend times in its child process, interleaved with the subject's.
    """

    name: str
    model: nn.Module
    x: torch.Tensor
    threads: int
    workdir: Path
    runs: int = 50
    warmup: int = 10
    rounds: int = 5
    ncnn_peer: PeerFile | None = None
    exports: dict[str, tuple[Path, dict[str, Any]]] = dataclasses.field(default_factory=dict)

    @property
    def batch(self) -> int:
        """Images per call."""
        return int(self.x.shape[0])

    @property
    def detector(self) -> bool:
        """True for mmdet detectors (timed to the final detections)."""
        return is_detector(self.model)


def make_input(size: Sequence[int], batch: int, images: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """The (batch, 3, H, W) input of a subject: ``images`` (1, 3, H, W) repeated in turn, or seeded noise."""
    if images:
        return torch.cat([images[i % len(images)] for i in range(batch)])
    return torch.randn((batch, 3, *size), generator=torch.Generator().manual_seed(0))


@dataclasses.dataclass
class ExtraRow:
    """A row measured together with a backend's own (ncnn with a peer: ``ncnn-raw``, ``ncnn-peer``)."""

    model: str
    backend: str
    note: str
    stats: dict[str, float]


@dataclasses.dataclass
class Prepared:
    """A backend ready to be measured: a callable to time here, or statistics measured elsewhere; and a note.

    ``extra``: further rows the same measurement produced (statistics only).
    """

    note: str
    fn: Callable[[], Any] | None = None
    stats: dict[str, float] | None = None
    extra: list[ExtraRow] = dataclasses.field(default_factory=list)


# ---------------------------------------------------------------------------------------------------- PyTorch
def folded(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with every BN folded (``switch_to_deploy``); unchanged for models without one."""
    return switch_to_deploy(eval_copy(model))


def _call(subject: Subject, model: nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    """``model`` on ``x``: mmdet's ``predict`` for a detector, the forward pass otherwise."""
    if subject.detector:
        return predict_fn(model, x)
    return lambda: model(x)


def _no_grad(fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        with torch.no_grad():
            return fn()
    return run


def _inference_mode(fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        with torch.inference_mode():
            return fn()
    return run


def _channels_last(subject: Subject) -> tuple[nn.Module, torch.Tensor]:
    """The folded model and the input, both channels_last."""
    # Module.to takes memory_format (torch's stubs omit it)
    return (folded(subject.model).to(memory_format=torch.channels_last),  # type: ignore[call-overload]
            subject.x.contiguous(memory_format=torch.channels_last))


def torch_plain(subject: Subject) -> Prepared:
    """Eager NCHW with BatchNorm kept (the baseline)."""
    return Prepared('NCHW, BN kept, no_grad', _no_grad(_call(subject, subject.model, subject.x)))


def torch_folded(subject: Subject) -> Prepared:
    """Eager NCHW, BN folded."""
    return Prepared('NCHW, BN folded, no_grad', _no_grad(_call(subject, folded(subject.model), subject.x)))


def torch_cl(subject: Subject) -> Prepared:
    """Eager channels_last, BN folded, ``inference_mode``."""
    model, x = _channels_last(subject)
    return Prepared('channels_last, BN folded, inference_mode', _inference_mode(_call(subject, model, x)))


def torch_jit(subject: Subject) -> Prepared:
    """TorchScript trace + freeze + ``optimize_for_inference`` of the folded model (tensor graphs only)."""
    if subject.detector:
        raise Unavailable('TorchScript tracing covers tensor graphs only (detector post-processing is Python)')
    x = subject.x
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        traced = torch.jit.optimize_for_inference(torch.jit.trace(folded(subject.model), x, check_trace=False).eval())
        traced(x)
    return Prepared('BN folded, trace + freeze + optimize_for_inference', _no_grad(lambda: traced(x)))


def torch_compile(subject: Subject) -> Prepared:
    """``torch.compile`` (inductor) of the folded channels_last model; compiled here, before the timing."""
    model, x = _channels_last(subject)
    if subject.detector:
        model.extract_feat = torch.compile(model.extract_feat)  # type: ignore[assignment,arg-type]
        fn = _inference_mode(_call(subject, model, x))
    else:
        compiled = torch.compile(model)
        fn = _inference_mode(lambda: compiled(x))
    t0 = time.perf_counter()
    try:
        fn()
    except Exception as exc:  # any compiler failure makes this row unavailable
        raise Unavailable(f'torch.compile failed: {type(exc).__name__}: {str(exc)[:200]}') from exc
    return Prepared(f'BN folded, channels_last, inductor (compiled in {time.perf_counter() - t0:.0f} s)', fn)


def _cuda(subject: Subject, dtype: torch.dtype) -> Prepared:
    if not torch.cuda.is_available():
        raise Unavailable('no CUDA device (torch.cuda.is_available() is False)')
    model = folded(subject.model).cuda().to(dtype=dtype,  # type: ignore[call-overload]
                                            memory_format=torch.channels_last)
    x = subject.x.cuda().to(dtype=dtype).contiguous(memory_format=torch.channels_last)
    fn = _inference_mode(_call(subject, model, x))

    def run() -> Any:
        out = fn()
        torch.cuda.synchronize()
        return out
    return Prepared(f'{torch.cuda.get_device_name()}, BN folded, channels_last', run)


def cuda_fp32(subject: Subject) -> Prepared:
    """PyTorch on the GPU in fp32."""
    return _cuda(subject, torch.float32)


def cuda_fp16(subject: Subject) -> Prepared:
    """PyTorch on the GPU in fp16 (backbones: mmdet's post-processing runs in fp32)."""
    if subject.detector:
        raise Unavailable('mmdet post-processing (mmcv NMS) runs in fp32; time the backbone instead')
    return _cuda(subject, torch.float16)


# ---------------------------------------------------------------------------------------------------- ONNX Runtime
def onnx_export_of(subject: Subject, kind: str) -> tuple[Path, dict[str, Any]]:
    """The ``plain`` (BN kept, nothing simplified), ``deploy`` or ``int8`` ONNX model of the subject and its report
    (cached).

    Detectors are exported for one image (NMS in the graph), backbones for the whole batch. ``int8`` is the deploy
    export quantized by :func:`..deploy.quantize.quantize_unchecked` with its defaults, calibrated on 8 generated
    pictures normalised as the model expects (latency only: the accuracy gate is ``tools/deploy/quantize.py``'s).
    """
    from ..deploy.onnx_export import export_backbone_onnx, export_detector_onnx
    if kind == 'int8' and kind not in subject.exports:
        from ..deploy.images import check_images
        from ..deploy.quantize import quantize_unchecked
        pictures = check_images(subject.model, tuple(subject.x.shape[2:]), None, num=8, seed=100)[0]
        per_call = 1 if subject.detector else subject.batch
        calibration = [torch.cat([pictures[(i + j) % 8] for j in range(per_call)]).numpy() for i in range(8)]
        path = subject.workdir / 'int8.onnx'
        subject.exports[kind] = (path, quantize_unchecked(onnx_export_of(subject, 'deploy')[0], path, calibration))
    if kind not in subject.exports:
        path = subject.workdir / f'{kind}.onnx'
        plain = kind == 'plain'
        kwargs: dict[str, Any] = dict(opset=17, dynamic=False, fold_bn=not plain, graph_opt=not plain,
                                      simplify=None if plain else 'onnxslim', verbose=False)
        if subject.detector:  # kind 'raw': the deploy export without NMS (raw head tensors)
            report = export_detector_onnx(subject.model, path, [subject.x[:1]], with_nms=kind != 'raw', **kwargs)
        else:
            report = export_backbone_onnx(subject.model, path, tuple(subject.x.shape), **kwargs)
        subject.exports[kind] = (path, report)
    return subject.exports[kind]


def ort_session_of(path: str | os.PathLike, threads: int, providers: Sequence[str], tuned: bool,
                   options: Any = None) -> Any:
    """The ONNX Runtime session of a row: ``tuned`` (``ort-deploy``, ``ort-raw``, ``ort-int8``, ``ort-cuda``, the
    peer ONNX files of peer mode and the profiles of :mod:`.ort_profile`: every graph optimisation, ``threads``
    intra-op threads, one inter-op thread) or the default session with ``threads`` intra-op threads
    (``ort-plain``). ``options``: session options to start from (the profiler's settings)."""
    import onnxruntime as ort

    from ..deploy.onnx_export import ort_session
    if tuned:
        return ort_session(path, providers=providers, threads=threads, optimization='all', options=options)
    opts = options if options is not None else ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=list(providers))


def _ort_call(subject: Subject, sess: Any) -> Callable[[], Any]:
    """A call of ``sess`` on the subject's input (detectors: one session run per image)."""
    feed = {sess.get_inputs()[0].name: subject.x[:1].numpy() if subject.detector else subject.x.numpy()}
    if subject.detector and subject.batch > 1:
        return lambda: [sess.run(None, feed) for _ in range(subject.batch)]
    return lambda: sess.run(None, feed)


def _ort(subject: Subject, kind: str, providers: list[str], tuned: bool) -> Callable[[], Any]:
    """A call of an ONNX Runtime session of the subject's ``kind`` export on its input."""
    return _ort_call(subject, ort_session_of(onnx_export_of(subject, kind)[0], subject.threads, providers, tuned))


def ort_peer(subject: Subject, peer: PeerFile) -> Prepared:
    """A peer ONNX file on the subject's input, with the session of the subject's ``ort-deploy`` / ``ort-raw``
    rows (:func:`ort_session_of`, tuned): timed in the same rounds as they are."""
    try:
        sess = ort_session_of(peer.path, subject.threads, ['CPUExecutionProvider'], tuned=True)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a model it cannot run
        raise RuntimeError(f'ONNX Runtime cannot load {str(peer.path)!r}: {str(exc).strip()[:300]}') from None
    per = ' per image' if subject.detector and subject.batch > 1 else ''
    return Prepared(f'peer ONNX file {peer.path.name} as given (input {peer.input_name!r} {peer.shape_text()}, '
                    f'{len(peer.output_names)} outputs), same session as ort-deploy / ort-raw: ORT_ENABLE_ALL'
                    f'{per}', _ort_call(subject, sess))


def ort_plain(subject: Subject) -> Prepared:
    """ONNX Runtime, default session, on the plain export (the ONNX baseline)."""
    return Prepared('plain export (BN kept, no simplification), default session',
                    _ort(subject, 'plain', ['CPUExecutionProvider'], tuned=False))


def _rewrites_note(rewrites: dict[str, int]) -> str:
    """The deploy rewrites of an export report (:func:`shufflenet_det.deploy.onnx_export.apply_graph_opt`)."""
    return (f'{rewrites.get("concat_shuffle_to_interleave", 0)} shuffle interleaves + '
            f'{rewrites.get("deinterleave_to_strided_slices", 0)} strided de-interleaves + '
            f'{rewrites.get("channel_padding", 0)} padded channel regions')


def ort_deploy(subject: Subject) -> Prepared:
    """ONNX Runtime, all graph optimisations, on the deploy export."""
    fn = _ort(subject, 'deploy', ['CPUExecutionProvider'], tuned=True)
    rw = onnx_export_of(subject, 'deploy')[1].get('graph_rewrites') or {}
    return Prepared(f'BN folded + onnxslim + {_rewrites_note(rw)}, ORT_ENABLE_ALL', fn)


def ort_int8(subject: Subject) -> Prepared:
    """ONNX Runtime, all graph optimisations, on the static int8 quantization of the deploy export."""
    fn = _ort(subject, 'int8', ['CPUExecutionProvider'], tuned=True)
    info = onnx_export_of(subject, 'int8')[1]
    return Prepared(f"QDQ int8 of the deploy export: {info['quantized_convs']} convs int8 (u8 activations, s8 "
                    f"per-channel weights, MinMax on 8 generated pictures), {info['float_convs']} float, "
                    'post-processing float, ORT_ENABLE_ALL', fn)


def ort_raw(subject: Subject) -> Prepared:
    """ONNX Runtime, all graph optimisations, on a detector's deploy export without NMS (the network alone)."""
    if not subject.detector:
        raise Unavailable('backbones have no post-processing: their ort-deploy row is the network alone')
    fn = _ort(subject, 'raw', ['CPUExecutionProvider'], tuned=True)
    rw = onnx_export_of(subject, 'raw')[1].get('graph_rewrites') or {}
    return Prepared('deploy export without NMS (raw head tensors, post-processing excluded): BN folded + onnxslim '
                    f'+ {_rewrites_note(rw)}, ORT_ENABLE_ALL', fn)


def ort_cuda(subject: Subject) -> Prepared:
    """ONNX Runtime's CUDA provider on the deploy export."""
    import onnxruntime as ort
    if 'CUDAExecutionProvider' not in ort.get_available_providers():
        raise Unavailable(f'onnxruntime has no CUDAExecutionProvider (providers: {ort.get_available_providers()})')
    if not torch.cuda.is_available():
        raise Unavailable('no CUDA device (torch.cuda.is_available() is False)')
    return Prepared('BN folded + onnxslim, CUDA provider',
                    _ort(subject, 'deploy', ['CUDAExecutionProvider', 'CPUExecutionProvider'], tuned=True))


# ---------------------------------------------------------------------------------------------------- ncnn
#: The child process that times ncnn: ``python -m shufflenet_det.runtime ncnn ...`` with torch, torchvision, mmcv,
#: mmengine and mmdet made unimportable, as on a board with numpy + ncnn only (``shufflenet_det`` then registers
#: nothing and imports in a fraction of a second). Arguments follow the code, as after ``python -m``.
RUNTIME_CHILD = ('import runpy, sys\n'
                 'sys.modules.update(dict.fromkeys(("torch", "torchvision", "mmcv", "mmengine", "mmdet")))\n'
                 'runpy.run_module("shufflenet_det.runtime", run_name="__main__", alter_sys=True)\n')


def ncnn(subject: Subject) -> Prepared:
    """Export with pnnx, then time the runtime's ncnn runner (:mod:`shufflenet_det.runtime.cli`) in a child process.

    A separate process because ncnn's OpenMP runtime and PyTorch's in one process disturb each other (their idle
    worker threads compete); the child imports no torch (:data:`RUNTIME_CHILD`), which is exactly what runs on a
    board. Detectors include the numpy post-processing; a batch is that many sequential images. Unavailable without
    ncnn / pnnx.
    """
    if importlib.util.find_spec('ncnn') is None or importlib.util.find_spec('pnnx') is None:
        raise Unavailable('ncnn / pnnx not installed (pip install -r requirements/deploy.txt)')
    from ..deploy.ncnn_export import export_backbone_ncnn, export_detector_ncnn
    out = subject.workdir / 'model_ncnn'
    x1 = subject.x[:1]
    if subject.detector:
        report = export_detector_ncnn(subject.model, out, [x1], verbose=False)
    else:
        report = export_backbone_ncnn(subject.model, out, tuple(x1.shape), verbose=False)
    padded = (report.get('graph_rewrites') or {}).get('channel_padding', 0)
    tensor, result = subject.workdir / 'input.npy', subject.workdir / 'ncnn_bench.json'
    np.save(tensor, x1.numpy())
    env = dict(os.environ, OMP_NUM_THREADS=str(subject.threads))
    cmd = [sys.executable, '-c', RUNTIME_CHILD, 'ncnn', str(out) + '.param', '--tensor', str(tensor), '--threads',
           str(subject.threads), '--bench', str(subject.runs), '--warmup', str(subject.warmup), '--out-json',
           str(result)]
    peer = subject.ncnn_peer
    if peer is not None:
        cmd += ['--peer', str(peer.path), str(peer.weights), '--rounds', str(subject.rounds)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f'the ncnn runner (python -m shufflenet_det.runtime ncnn) failed: {proc.stderr[-500:]}')
    measured = json.loads(result.read_text())

    def per_call(lat: dict[str, float]) -> dict[str, float]:
        return {k: lat[k] * subject.batch for k in ('median_ms', 'p90_ms', 'min_ms', 'mean_ms')}
    note = (f'pnnx export, BN folded, {padded} padded channel regions, ncnn defaults, timed by the runtime\'s ncnn '
            'runner in a torch-free process')
    batch = f'; batch {subject.batch} = {subject.batch} sequential images' if subject.batch > 1 else ''
    prepared = Prepared(note + (' (raw head + numpy post-processing)' if subject.detector else '') + batch,
                        stats=per_call(measured['latency']))
    if peer is not None:
        n = measured['latency']['rounds']
        rounds = f'interleaved in {n} round{"s" if n != 1 else ""} in the same child'
        prepared.note += f'; {rounds} with {peer.name}'
        if subject.detector:
            prepared.extra.append(ExtraRow(subject.name, NCNN_RAW, f'{note}: the network alone (raw head tensors, '
                                           f'no post-processing), {rounds} with {peer.name}{batch}',
                                           per_call(measured['network_latency'])))
        prepared.extra.append(ExtraRow(peer.name, peer.backend, f'peer ncnn files {peer.path.name} / '
                                       f'{peer.weights.name if peer.weights else "?"} as given (input '
                                       f'{peer.input_name!r}, outputs {peer.output_names}), the same ncnn options, '
                                       f'{rounds} with {subject.name}{batch}',
                                       per_call(measured['peer']['latency'])))
    return prepared


#: Every backend name and the function that prepares it.
BACKENDS: dict[str, Callable[[Subject], Prepared]] = {
    'torch-plain': torch_plain, 'torch-folded': torch_folded, 'torch-cl': torch_cl, 'torch-jit': torch_jit,
    'torch-compile': torch_compile, 'ort-plain': ort_plain, 'ort-deploy': ort_deploy, 'ort-raw': ort_raw,
    'ort-int8': ort_int8, 'ncnn': ncnn,
    'ort-cuda': ort_cuda, 'cuda-fp32': cuda_fp32, 'cuda-fp16': cuda_fp16}


# ---------------------------------------------------------------------------------------------------- peers
def _torchvision_shufflenet() -> nn.Module:
    if importlib.util.find_spec('torchvision') is None:
        raise Unavailable('torchvision is not installed')
    try:
        from torchvision.models import shufflenet_v2_x1_0
    except Exception as exc:  # a broken install is reported, not fatal
        raise Unavailable(f'torchvision does not import: {type(exc).__name__}: {exc}') from exc
    return shufflenet_v2_x1_0(weights=None).eval()


def _mmpretrain_shufflenet() -> nn.Module:
    if importlib.util.find_spec('mmpretrain') is None:
        raise Unavailable('mmpretrain is not installed')
    if importlib.util.find_spec('torchvision') is None:
        raise Unavailable('mmpretrain is installed but needs torchvision, which is not (not imported)')
    try:
        from mmpretrain.models.backbones import ShuffleNetV2 as MMPShuffleNetV2
    except Exception as exc:  # a broken install is reported, not fatal
        raise Unavailable(f'mmpretrain does not import: {type(exc).__name__}: {exc}') from exc
    model = MMPShuffleNetV2(widen_factor=1.0)
    model.eval()  # mmpretrain's train() override returns None, so eval() cannot be chained
    return model


def peer_models() -> list[tuple[str, Callable[[], nn.Module]]]:
    """ShuffleNetV2 1.0x implementations of other projects, as (name, builder); builders raise Unavailable.

    torchvision and mmpretrain are only used when they are installed and import cleanly; nothing is emulated.
    """
    return [('torchvision shufflenet_v2_x1_0', _torchvision_shufflenet),
            ('mmpretrain ShuffleNetV2 1.0x', _mmpretrain_shufflenet)]
