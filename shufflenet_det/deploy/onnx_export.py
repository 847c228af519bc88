"""ONNX export of ShuffleNet backbones and single-stage detectors, each checked against PyTorch.

The TorchScript-based exporter is used (``torch.onnx.export(..., dynamo=False)``): on torch 2.13 the default dynamo
exporter would be taken otherwise, and the TorchScript path is the one ONNX Runtime, onnxslim, pnnx and mmdeploy are
tested with. :class:`OnnxBackend` is the ONNX part of the export skeleton (:mod:`.exporter`: build, fold, export,
check, report, atomic write): it exports to a temporary file, validates it with ``onnx.checker``, optionally
simplifies and rewrites it and runs it in ONNX Runtime for the parity check; the model is renamed into place together
with a ``<model>.onnx.json`` report (``.onnx.json``: it cannot collide with the ``.json`` of an ncnn export of the
same name). A failed export or a failed parity check leaves nothing behind.
"""
from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .export_common import ExportError, check_input_shape
from .exporter import ExportBackend, ExportJob, Tolerances, build_backbone_job, build_detector_job, run_export
from .parity import RTOL

MIN_OPSET = 11  # NonMaxSuppression with the inputs used here, TopK with k as input, Resize of mmdet's FPN
MAX_OPSET = 20  # highest opset of the TorchScript exporter of torch 2.13
SIMPLIFIERS = ('onnxslim', 'onnxsim')


def report_path_of(onnx_path: str | os.PathLike) -> Path:
    """Where the JSON report of an ONNX export lives: ``model.onnx`` -> ``model.onnx.json``."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.name + '.json')


def check_opset(opset: int) -> int:
    """ValueError unless ``MIN_OPSET <= opset <= MAX_OPSET``."""
    if not isinstance(opset, int) or isinstance(opset, bool) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f'opset must be an integer in [{MIN_OPSET}, {MAX_OPSET}], got {opset!r}')
    return opset


def simplify_onnx(path: str | os.PathLike, method: str) -> str:
    """Simplify the ONNX file in place with ``onnxslim`` or ``onnxsim``; return the tool's name and version."""
    import onnx
    if method == 'onnxslim':
        import onnxslim
        model = onnxslim.slim(str(path))
        onnx.save(model, str(path))
        return f'onnxslim {onnxslim.__version__}'
    if method == 'onnxsim':
        try:
            import onnxsim
        except ImportError as exc:
            raise ValueError('simplify=onnxsim requested but onnxsim is not installed (use onnxslim)') from exc
        model, ok = onnxsim.simplify(onnx.load(str(path)))
        if not ok:
            raise ExportError('onnxsim could not validate the simplified model')
        onnx.save(model, str(path))
        return f'onnxsim {onnxsim.__version__}'
    raise ValueError(f'simplify must be one of {SIMPLIFIERS} or None, got {method!r}')


#: The channel multiple of the padded regions: ONNX Runtime's NCHWc block with AVX-512 (16; AVX2's 8 divides it).
#: Measured on lite-m 320 (AMD EPYC, AVX-512, one thread): 16 about 2 % faster than 4 (which leaves the stem alone).
PAD_MULTIPLE = 16


def apply_graph_opt(path: str | os.PathLike) -> dict[str, int]:
    """Apply the deploy rewrites to the ONNX file in place; counts per rewrite.

    :func:`.graph_opt.fuse_concat_shuffle` (concat + channel shuffle -> one interleave),
    :func:`.graph_opt.split_deinterleave` (the Megvii units' de-interleave + halves -> two strided slices) and
    :func:`.channel_pad.pad_channel_regions` (tensors between convolutions zero-padded to a multiple of
    :data:`PAD_MULTIPLE` channels, so ONNX Runtime keeps them in its blocked layout). Both are exact; the parity
    check follows.
    """
    import onnx

    from .channel_pad import pad_channel_regions
    from .graph_opt import fuse_concat_shuffle, split_deinterleave
    model = onnx.load(str(path))
    counts = dict(concat_shuffle_to_interleave=fuse_concat_shuffle(model),
                  deinterleave_to_strided_slices=split_deinterleave(model),
                  channel_padding=pad_channel_regions(model, multiple=PAD_MULTIPLE))
    if any(counts.values()):
        onnx.save(model, str(path))
    return counts


def ort_session(path: str | os.PathLike, providers: Sequence[str] | None = None, threads: int = 0,
                optimization: str = 'all', options: Any = None) -> Any:
    """An ONNX Runtime session (CPU provider unless ``providers`` says otherwise); ``options``: session options
    to start from (e.g. with profiling on), whose optimisation level, threads and log level are set here."""
    import onnxruntime as ort
    opts = options if options is not None else ort.SessionOptions()
    opts.graph_optimization_level = {
        'disable': ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        'basic': ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        'extended': ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        'all': ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[optimization]
    if threads > 0:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts,
                                providers=list(providers or ['CPUExecutionProvider']))


def torch_onnx_export(model: nn.Module, args: tuple[Any, ...], path: str | os.PathLike, input_names: Sequence[str],
                      output_names: Sequence[str], opset: int,
                      dynamic_axes: dict[str, dict[int, str]] | None = None) -> None:
    """``torch.onnx.export`` through the TorchScript exporter, with export-time warnings silenced.

    torch >= 2.9 defaults to the dynamo exporter and takes ``dynamo=False``; older torch has only the TorchScript
    exporter and no such argument.
    """
    extra: dict[str, Any] = {'dynamo': False} if 'dynamo' in inspect.signature(torch.onnx.export).parameters else {}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(model, args, str(path), input_names=list(input_names),
                          output_names=list(output_names), opset_version=opset, dynamic_axes=dynamic_axes,
                          do_constant_folding=True, export_params=True, **extra)


class OnnxBackend(ExportBackend):
    """The ONNX steps of :func:`.exporter.run_export`: TorchScript export, ``onnx.checker``, optional simplification
    and deploy rewrites (:func:`apply_graph_opt`); run in ONNX Runtime (CPU); ``<model>.onnx`` + ``<model>.onnx.json``.
    """

    format = 'onnx'
    what = 'ONNX model'
    step = 'ONNX export'

    def __init__(self, opset: int = 17, simplify: str | None = None, graph_opt: bool = False,
                 input_name: str = 'input') -> None:
        self.opset = check_opset(opset)
        if simplify is not None and simplify not in SIMPLIFIERS:
            raise ValueError(f'simplify must be one of {SIMPLIFIERS} or None, got {simplify!r}')
        self.simplify, self.graph_opt, self.input_name = simplify, graph_opt, input_name
        self.path = Path()
        self.tmp = Path()
        self.simplified_by: str | None = None
        self.rewrites: dict[str, int] | None = None
        self._session: Any = None

    def output_paths(self, out: str | os.PathLike) -> list[Path]:
        """``model.onnx`` and its report ``model.onnx.json``."""
        self.path = Path(out)
        if self.path.suffix != '.onnx':
            raise ValueError(f'output {str(self.path)!r} must end with .onnx')
        return [self.path, report_path_of(self.path)]

    def convert(self, job: ExportJob, files: list[Path]) -> None:
        """Export, validate, simplify, rewrite."""
        import onnx
        (self.tmp,) = files
        axes = None
        if job.dynamic:
            axes = {self.input_name: {0: 'batch', 2: 'height', 3: 'width'}}
            axes.update({n: job.output_axes[n] for n in job.output_names})
        torch_onnx_export(job.model, (job.inputs[0],), self.tmp, [self.input_name], job.output_names, self.opset,
                          axes)
        onnx.checker.check_model(str(self.tmp))
        self.simplified_by = simplify_onnx(self.tmp, self.simplify) if self.simplify else None
        self.rewrites = apply_graph_opt(self.tmp) if self.graph_opt else None

    def run(self, x: torch.Tensor) -> list[np.ndarray]:
        """ONNX Runtime's outputs (one session per export)."""
        if self._session is None:
            self._session = ort_session(self.tmp)
        return list(self._session.run(None, {self.input_name: x.numpy()}))

    def report_fields(self, job: ExportJob) -> dict[str, Any]:
        """File, opset, axes, names, simplifier, rewrites and versions."""
        import onnx
        return dict(model=self.path.name, format=self.format, opset=self.opset, dynamic=job.dynamic,
                    input_name=self.input_name, output_names=list(job.output_names), simplified_by=self.simplified_by,
                    graph_rewrites=self.rewrites, torch=torch.__version__, onnx=onnx.__version__)


# ---------------------------------------------------------------------------------------------------- backbone
def export_backbone_onnx(backbone: nn.Module, path: str | os.PathLike, input_shape: Sequence[int] = (1, 3, 224, 224),
                         opset: int = 17, dynamic: bool = False, fold_bn: bool = True,
                         simplify: str | None = None, atol: float = 1e-4, rtol: float = RTOL, seed: int = 0,
                         verbose: bool = True, graph_opt: bool = True) -> dict[str, Any]:
    """Export a backbone (BN folded unless ``fold_bn=False``) and check every feature map (``atol`` / ``rtol``:
    the tensor rule of :mod:`.parity`, which follows the scale of each feature map).

    The reference is the original (unfolded) PyTorch backbone in eval mode; with ``dynamic`` the batch and spatial
    axes are dynamic and the check also runs at a second input size. ``graph_opt`` applies the rewrites of
    :func:`apply_graph_opt` (the channel shuffles rewritten, static shapes only; tensors between convolutions
    zero-padded to :data:`PAD_MULTIPLE` channels).
    """
    backend = OnnxBackend(opset, simplify, graph_opt)
    shape = check_input_shape(input_shape)
    job = build_backbone_job(backbone, shape, fold_bn=fold_bn, dynamic=dynamic, seed=seed,
                             meta_extra=dict(input_shape=list(shape)))
    return run_export(backend, job, path, Tolerances(atol, rtol), verbose)


# ---------------------------------------------------------------------------------------------------- detector
def export_detector_onnx(detector: nn.Module, path: str | os.PathLike, images: Sequence[torch.Tensor],
                         opset: int = 17, dynamic: bool = False, fold_bn: bool = True, with_nms: bool = True,
                         simplify: str | None = None, box_atol: float = 1e-2, score_atol: float = 1e-4,
                         raw_atol: float = 1e-3, raw_rtol: float = RTOL, verbose: bool = True,
                         graph_opt: bool = True) -> dict[str, Any]:
    """Export a detector whose head has a deploy form (:mod:`.forms`: RetinaNet-like, lite); check it against
    mmdet's ``predict`` on every image of ``images``.

    ``images`` are normalised (1, 3, H, W) tensors; the first one is the export example (and, for a static export,
    every image must have its size). With NMS the check compares boxes (``box_atol`` pixels), scores
    (``score_atol``) and labels (exactly, after one-to-one matching) with mmdet's post-processing; without NMS it
    compares the raw head tensors (``raw_atol`` / ``raw_rtol``) and the detections that the numpy post-processing
    (``runtime.postprocess.decode_outputs``, driven by the report's ``postprocess`` entry) makes of ONNX Runtime's raw
    outputs with mmdet's, within the same box and score tolerances. Every rule is :mod:`.parity`'s: tolerances
    scale with the magnitude of the raw head outputs, and detections may differ only at the score, top-k and NMS
    boundaries of the head's ``test_cfg``. The wrapper comes from the head's form (:func:`.detector.export_wrapper`;
    lite detectors: one raw tensor ``output``).
    """
    backend = OnnxBackend(opset, simplify, graph_opt)
    meta_extra = dict(input_shape=list(images[0].shape)) if images else None
    job = build_detector_job(detector, images, fold_bn=fold_bn, dynamic=dynamic, with_nms=with_nms,
                             meta_extra=meta_extra)
    return run_export(backend, job, path, Tolerances(raw_atol, raw_rtol, box_atol, score_atol), verbose)
