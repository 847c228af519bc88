"""ONNX export of ShuffleNet backbones and single-stage detectors, each checked against PyTorch.

The TorchScript-based exporter is used (``torch.onnx.export(..., dynamo=False)``): on torch 2.13 the default dynamo
exporter would be taken otherwise, and the TorchScript path is the one ONNX Runtime, onnxslim, pnnx and mmdeploy are
tested with. Every export writes to a temporary file, validates it with ``onnx.checker``, optionally simplifies it,
runs it in ONNX Runtime against the PyTorch model and only then renames it into place, together with a
``<model>.onnx.json`` parity report (``.onnx.json``: it cannot collide with the ``.json`` of an ncnn
export of the same name). A failed export or a failed parity check leaves nothing behind.
"""
from __future__ import annotations

import inspect
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..utils.build import prepare_for_export
from ..utils.io import atomic_outputs
from ..utils.predict import predict_detections
from .export_common import (
    ExportError,
    TupleOutputs,
    backbone_meta,
    check_input_shape,
    detector_meta,
    prepare_detector,
    random_check_inputs,
    require_parity,
    reraise_interrupt,
    unpad_detections,
    with_second_size,
)
from .parity import RTOL, compare_detections, compare_tensors, summarize

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


def apply_graph_opt(path: str | os.PathLike) -> dict[str, int]:
    """Apply the deploy rewrites to the ONNX file in place; counts per rewrite.

    :func:`.graph_opt.fuse_concat_shuffle` (concat + channel shuffle -> one interleave) and
    :func:`.channel_pad.pad_depthwise_chains` (middle width of conv -> depthwise -> conv chains zero-padded to a
    multiple of 4, so ONNX Runtime keeps them in its blocked layout). Both are exact; the parity check follows.
    """
    import onnx

    from .channel_pad import pad_depthwise_chains
    from .graph_opt import fuse_concat_shuffle
    model = onnx.load(str(path))
    counts = dict(concat_shuffle_to_interleave=fuse_concat_shuffle(model),
                  depthwise_chain_padding=pad_depthwise_chains(model, multiple=4))
    if any(counts.values()):
        onnx.save(model, str(path))
    return counts


def ort_session(path: str | os.PathLike, providers: Sequence[str] | None = None, threads: int = 0,
                optimization: str = 'all') -> Any:
    """An ONNX Runtime session (CPU provider unless ``providers`` says otherwise)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
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


def torch_onnx_export(model: nn.Module, args: tuple, path: str | os.PathLike, input_names: Sequence[str],
                      output_names: Sequence[str], opset: int,
                      dynamic_axes: dict[str, dict[int, str]] | None = None) -> None:
    """``torch.onnx.export`` through the TorchScript exporter, with export-time warnings silenced.

    torch >= 2.9 defaults to the dynamo exporter and takes ``dynamo=False``; older torch has only the TorchScript
    exporter and no such argument.
    """
    extra = {'dynamo': False} if 'dynamo' in inspect.signature(torch.onnx.export).parameters else {}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(model, args, str(path), input_names=list(input_names),
                          output_names=list(output_names), opset_version=opset, dynamic_axes=dynamic_axes,
                          do_constant_folding=True, export_params=True, **extra)


def export_checked(model: nn.Module, example: torch.Tensor, path: str | os.PathLike, *, input_name: str,
                   output_names: Sequence[str], opset: int, dynamic_axes: dict[str, dict[int, str]] | None,
                   simplify: str | None, check: Callable[[Path], dict[str, Any]], meta: dict[str, Any],
                   verbose: bool = True, graph_opt: bool = False) -> dict[str, Any]:
    """Export, validate, simplify, check parity with ``check(tmp_path)``; write model + JSON only if it passes."""
    import onnx
    check_opset(opset)
    if simplify is not None and simplify not in SIMPLIFIERS:
        raise ValueError(f'simplify must be one of {SIMPLIFIERS} or None, got {simplify!r}')
    path = Path(path)
    if path.suffix != '.onnx':
        raise ValueError(f'output {str(path)!r} must end with .onnx')
    report_path = report_path_of(path)
    t0 = time.perf_counter()
    # the model and its report are renamed into place together: never one without the other
    with atomic_outputs([path, report_path], 'ONNX model') as (tmp, tmp_report):
        try:
            torch_onnx_export(model, (example,), tmp, [input_name], output_names, opset, dynamic_axes)
            onnx.checker.check_model(str(tmp))
            simplified_by = simplify_onnx(tmp, simplify) if simplify else None
            rewrites = apply_graph_opt(tmp) if graph_opt else None
        except (ValueError, ExportError, OSError):  # OSError: a full or read-only disk, reported as such
            raise
        except Exception as exc:  # any exporter failure becomes one clear error
            reraise_interrupt(exc)
            raise ExportError(f'ONNX export to {str(path)!r} failed: {type(exc).__name__}: {exc}') from exc
        parity = check(tmp)
        report = dict(model=path.name, format='onnx', opset=opset, dynamic=bool(dynamic_axes),
                      input_name=input_name, output_names=list(output_names), simplified_by=simplified_by,
                      graph_rewrites=rewrites,
                      torch=torch.__version__, onnx=onnx.__version__, export_seconds=None, **meta,
                      parity=parity)
        report['export_seconds'] = round(time.perf_counter() - t0, 2)
        require_parity(path, parity, verbose)
        tmp_report.write_text(json.dumps(report, indent=2) + '\n')
    return report


# ---------------------------------------------------------------------------------------------------- backbone
def export_backbone_onnx(backbone: nn.Module, path: str | os.PathLike, input_shape: Sequence[int] = (1, 3, 224, 224),
                         opset: int = 17, dynamic: bool = False, fold_bn: bool = True,
                         simplify: str | None = None, atol: float = 1e-4, rtol: float = RTOL, seed: int = 0,
                         verbose: bool = True, graph_opt: bool = True) -> dict[str, Any]:
    """Export a backbone (BN folded unless ``fold_bn=False``) and check every feature map (``atol`` / ``rtol``:
    the tensor rule of :mod:`.parity`, which follows the scale of each feature map).

    The reference is the original (unfolded) PyTorch backbone in eval mode; with ``dynamic`` the batch and spatial
    axes are dynamic and the check also runs at a second input size. ``graph_opt`` applies the rewrites of
    :func:`apply_graph_opt` (the concat + channel shuffle of each unit becomes one interleave, static shapes only;
    conv -> depthwise -> conv chains whose width is not a multiple of 4 are zero-padded to one).
    """
    shape = check_input_shape(input_shape)
    reference, model = prepare_for_export(backbone, fold_bn)
    wrapped = TupleOutputs(model).eval()
    inputs = random_check_inputs(shape, dynamic, seed)
    with torch.no_grad():
        num_out = len(wrapped(inputs[0]))
    names = [f'feat{i}' for i in range(num_out)]
    axes = None
    if dynamic:
        axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
        axes.update({n: {0: 'batch', 2: f'{n}_h', 3: f'{n}_w'} for n in names})

    def check(tmp: Path) -> dict[str, Any]:
        sess = ort_session(tmp)
        checks = []
        with torch.no_grad():
            for x in inputs:
                ref = TupleOutputs(reference)(x)
                got = sess.run(None, {'input': x.numpy()})
                res = compare_tensors(ref, got, atol, rtol, names)
                res['input_shape'] = list(x.shape)
                checks.append(res)
        return summarize(checks)

    meta = backbone_meta(backbone, fold_bn, input_shape=list(shape))
    return export_checked(wrapped, inputs[0], path, input_name='input', output_names=names, opset=opset,
                          dynamic_axes=axes, simplify=simplify, check=check, meta=meta, verbose=verbose,
                          graph_opt=graph_opt)


# ---------------------------------------------------------------------------------------------------- detector
def export_detector_onnx(detector: nn.Module, path: str | os.PathLike, images: Sequence[torch.Tensor],
                         opset: int = 17, dynamic: bool = False, fold_bn: bool = True, with_nms: bool = True,
                         simplify: str | None = None, box_atol: float = 1e-2, score_atol: float = 1e-4,
                         raw_atol: float = 1e-3, raw_rtol: float = RTOL, verbose: bool = True,
                         graph_opt: bool = True) -> dict[str, Any]:
    """Export a RetinaNet-like or lite detector; check against mmdet's ``predict`` on every image of ``images``.

    ``images`` are normalised (1, 3, H, W) tensors; the first one is the export example (and, for a static export,
    every image must have its size). With NMS the check compares boxes (``box_atol`` pixels), scores
    (``score_atol``) and labels (exactly, after one-to-one matching) with mmdet's post-processing; without NMS it
    compares the raw head tensors (``raw_atol`` / ``raw_rtol``) and the detections that the numpy post-processing
    (``runtime.postprocess.decode_outputs``, driven by the report's ``postprocess`` entry) makes of ONNX Runtime's raw
    outputs with mmdet's, within the same box and score tolerances. Every rule is :mod:`.parity`'s: tolerances
    scale with the magnitude of the raw head outputs, and detections may differ only at the score, top-k and NMS
    boundaries of the head's ``test_cfg``. The wrapper comes from
    :func:`.detector.export_wrapper` (lite detectors: one raw tensor ``output``, see :mod:`.lite`).
    """
    from ..runtime.postprocess import decode_outputs
    from .detector import export_wrapper, head_output_scales, postprocess_meta
    if not images:
        raise ValueError('export_detector_onnx needs at least one check image')
    shape = check_input_shape(images[0].shape)
    if not dynamic and any(tuple(im.shape) != shape for im in images):
        raise ValueError(f'static export at {shape}: every check image must have that shape, got '
                         f'{sorted({tuple(im.shape) for im in images})}')
    images = with_second_size(images, dynamic)
    reference, model, folded = prepare_detector(detector, fold_bn)
    wrapper = export_wrapper(model, with_nms=with_nms).eval()
    names = wrapper.output_names
    post = postprocess_meta(detector)
    axes = None
    if dynamic:
        axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
        axes.update({n: {0: 'batch'} for n in names})

    def check(tmp: Path) -> dict[str, Any]:
        sess = ort_session(tmp)
        checks = []
        for x in images:
            got = sess.run(None, {'input': x.numpy()})
            with torch.no_grad():
                raw = export_wrapper(reference, with_nms=False)(x)
            scales = head_output_scales(reference, x, raw)
            if with_nms:
                for ref, act, (scale, box_scale) in zip(predict_detections(reference, x), unpad_detections(*got),
                                                        scales):
                    res = compare_detections(ref, act, box_atol, score_atol, post['test_cfg'], scale, box_scale)
                    res['input_shape'] = list(x.shape)
                    checks.append(res)
            else:
                res = compare_tensors(raw, got, raw_atol, raw_rtol, names)
                res['input_shape'] = list(x.shape)
                checks.append(res)
                torch_dets = predict_detections(reference, x)
                for i, ref_dets in enumerate(torch_dets):
                    dets = decode_outputs([o[i:i + 1] for o in got], post, tuple(x.shape[2:]))
                    res = compare_detections(ref_dets, dets, box_atol, score_atol, post['test_cfg'], *scales[i])
                    res['input_shape'] = list(x.shape)
                    checks.append(res)
        return summarize(checks)

    meta = detector_meta(detector, folded, with_nms, post, input_shape=list(shape))
    return export_checked(wrapper, images[0], path, input_name='input', output_names=names, opset=opset,
                          dynamic_axes=axes, simplify=simplify, check=check, meta=meta, verbose=verbose,
                          graph_opt=graph_opt)
