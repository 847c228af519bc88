"""ncnn export (ARM phones and boards) through pnnx, checked against PyTorch.

pnnx traces the model, lowers it to ncnn and writes ``<name>.param`` / ``<name>.bin``; the channel split of the
ShuffleNet blocks becomes an ncnn ``Slice`` and the view/transpose channel shuffle a ``ShuffleChannel`` layer. The
export is run in a scratch folder; the model, its ``.bin`` and a ``<name>.json`` side-car (parity report, blob names,
input size, and for detectors the post-processing description) are renamed into place only when the parity check
passes.

Detectors are exported without NMS (ncnn has no NMS layer matching mmdet's post-processing): the graph ends at the raw
head tensors and ``runtime.postprocess.decode_outputs`` (used by ``tools/deploy/ncnn_runner.py``) decodes and
suppresses boxes outside. Parity is checked with ncnn's default options, i.e. fp16 storage/arithmetic where the CPU
has them, so the tolerances are those of half precision.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..utils.build import prepare_for_export
from ..utils.io import atomic_outputs, check_writable_dir
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
    with_second_size,
)
from .parity import compare_detections, compare_tensors, summarize


def ncnn_paths(out: str | os.PathLike) -> tuple[Path, Path, Path]:
    """``(param, bin, json)`` paths for an output given as ``name``, ``name.param`` or ``name.ncnn.param``."""
    out = Path(out)
    stem = out.name[:-len('.param')] if out.name.endswith('.param') else out.name
    base = out.with_name(stem)
    return base.with_name(stem + '.param'), base.with_name(stem + '.bin'), base.with_name(stem + '.json')


def run_ncnn(param: str | os.PathLike, bin_path: str | os.PathLike, inputs: dict[str, np.ndarray],
             outputs: Sequence[str], threads: int = 1, fp16: bool = True) -> list[np.ndarray]:
    """Run an ncnn model once on CHW float inputs (batch 1) and return the named outputs as numpy arrays."""
    import ncnn
    net = ncnn.Net()
    net.opt.num_threads = threads
    if not fp16:
        net.opt.use_fp16_storage = net.opt.use_fp16_packed = net.opt.use_fp16_arithmetic = False
    if net.load_param(str(param)) != 0 or net.load_model(str(bin_path)) != 0:
        raise ExportError(f'ncnn cannot load {param} / {bin_path}')
    ex = net.create_extractor()
    keep_alive = []  # ncnn.Mat(arr) does not copy: keep arr alive while the extractor runs
    for name, arr in inputs.items():
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        keep_alive.append(arr)
        ex.input(name, ncnn.Mat(arr))
    results = []
    for name in outputs:
        ret, mat = ex.extract(name)
        if ret != 0:
            raise ExportError(f'ncnn extract({name!r}) failed with code {ret}')
        results.append(np.array(mat, copy=True))
    del ex, net
    return results


def _shape_arg(x: torch.Tensor) -> str:
    return '[' + ','.join(str(int(d)) for d in x.shape) + ']f32'


def pnnx_convert(model: nn.Module, example: torch.Tensor, param: Path, bin_path: Path, workdir: Path,
                 dynamic_example: torch.Tensor | None = None, fp16_weights: bool = False,
                 timeout: float = 600) -> str:
    """Trace ``model`` (TorchScript) and run the pnnx converter on it; write the ncnn ``param``/``bin``.

    pnnx's other artefacts (pnnx graph, python scripts) stay in ``workdir``. Returns pnnx's log; ExportError with the
    log's tail when pnnx fails.
    """
    import subprocess
    import warnings

    import pnnx
    pt = workdir / 'model.pt'
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        traced = torch.jit.trace(model.eval(), (example,), check_trace=False)
        traced.save(str(pt))
    cmd = [pnnx.EXEC_PATH, str(pt), 'inputshape=' + _shape_arg(example), 'device=cpu', 'optlevel=2',
           f'pnnxparam={workdir / "model.pnnx.param"}', f'pnnxbin={workdir / "model.pnnx.bin"}',
           f'pnnxpy={workdir / "model_pnnx.py"}', f'pnnxonnx={workdir / "model.pnnx.onnx"}',
           f'ncnnparam={param}', f'ncnnbin={bin_path}', f'ncnnpy={workdir / "model_ncnn.py"}',
           'fp16=' + ('1' if fp16_weights else '0')]
    if dynamic_example is not None:
        cmd.append('inputshape2=' + _shape_arg(dynamic_example))
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(workdir), timeout=timeout)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0 or not param.is_file() or param.stat().st_size == 0 or bin_path.stat().st_size == 0:
        hint = ''
        free = shutil.disk_usage(workdir).free
        if free < 256 * 2 ** 20:  # pnnx aborts without a clear message when it cannot write
            hint = f'; the disk holding {str(workdir.parent)!r} has only {free / 2 ** 20:.0f} MiB free'
        raise ExportError(f'pnnx failed (exit code {proc.returncode}){hint}; log tail:\n{log[-2000:]}')
    return log


def _layer_types(param: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in param.read_text().splitlines()[2:]:
        if line.strip():
            kind = line.split()[0]
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def _blob_names(param: Path) -> tuple[list[str], list[str]]:
    """Input blob names (``Input`` layers) and graph outputs (blobs produced but never consumed)."""
    produced, consumed, inputs = [], set(), []
    for line in param.read_text().splitlines()[2:]:
        parts = line.split()
        if len(parts) < 4:
            continue
        kind, n_in, n_out = parts[0], int(parts[2]), int(parts[3])
        ins, outs = parts[4:4 + n_in], parts[4 + n_in:4 + n_in + n_out]
        consumed.update(ins)
        produced.extend(outs)
        if kind == 'Input':
            inputs.extend(outs)
    outputs = [b for b in produced if b not in consumed and b not in inputs]
    if all(re.fullmatch(r'out\d+', b) for b in outputs):  # pnnx names graph outputs out0, out1, ... in order
        outputs.sort(key=lambda b: int(b[3:]))
    return inputs, outputs


def export_ncnn(model: nn.Module, out: str | os.PathLike, inputs: Sequence[torch.Tensor],
                reference: nn.Module | None = None, *, dynamic: bool = False, fp16_weights: bool = False,
                atol: float = 5e-3, rtol: float = 5e-3, meta: dict[str, Any] | None = None,
                det_check: dict[str, Any] | None = None, verbose: bool = True) -> dict[str, Any]:
    """Convert ``model`` (returning a tuple of tensors) to ncnn and check it on every input of ``inputs``.

    ``reference`` (default: ``model``) gives the expected outputs; the tensor check is :mod:`.parity`'s rule
    ``|ncnn - torch| <= atol * max(1, max|torch|) + rtol * |torch|`` (defaults: half-precision tolerance).
    ``det_check`` (for detectors) holds ``postprocess`` meta and ``torch_dets`` (one mmdet result per input): the
    numpy post-processing of the ncnn outputs must then match mmdet's detections by :mod:`.parity`'s detection rule
    (``box_atol`` / ``score_atol`` scaled by the raw outputs' magnitude, boundary cases of ``test_cfg``).
    """
    if not inputs:
        raise ValueError('export_ncnn needs at least one check input')
    for x in inputs:
        check_input_shape(x.shape)
        if x.shape[0] != 1:
            raise ValueError(f'ncnn models run one image at a time: batch must be 1, got {tuple(x.shape)}')
    if not dynamic and any(tuple(x.shape) != tuple(inputs[0].shape) for x in inputs):
        raise ValueError('static ncnn export: every check input must have the export shape')
    param, bin_path, report_path = ncnn_paths(out)
    parent = check_writable_dir(param, 'ncnn output')
    reference = reference if reference is not None else model
    t0 = time.perf_counter()
    # the model, its weights and its report are renamed into place together: never one without the others
    with atomic_outputs([param, bin_path, report_path], 'ncnn output') as (tmp_param, tmp_bin, tmp_report):
        # pnnx's scratch folder is named like utils.io's temporaries (``.<name>.<pid>.<random>.tmpdir``), so that
        # the next write into this folder removes it if this process is killed outright; any exception (a full
        # disk, SIGTERM / SIGINT through shufflenet_det.utils.cli) removes it here, and subprocess.run kills a
        # running pnnx first
        workdir = Path(tempfile.mkdtemp(prefix=f'.{param.name}.{os.getpid()}.', suffix='.tmpdir', dir=parent))
        try:
            dyn = None
            if dynamic:
                dyn = next((x for x in inputs[1:] if x.shape != inputs[0].shape), None)
                if dyn is None:
                    h, w = inputs[0].shape[2:]
                    dyn = torch.zeros(1, 3, h + 32, w + 32)
            try:
                pnnx_convert(model, inputs[0], tmp_param, tmp_bin, workdir, dyn, fp16_weights)
            except (ExportError, OSError):  # OSError: a full or read-only disk, reported as such
                raise
            except Exception as exc:  # any converter failure becomes one clear error
                reraise_interrupt(exc)
                raise ExportError(f'pnnx conversion to {str(param)!r} failed: {type(exc).__name__}: {exc}') from exc
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        in_blobs, out_blobs = _blob_names(tmp_param)
        if len(in_blobs) != 1:
            raise ExportError(f'expected one input blob, found {in_blobs}')
        checks = []
        with torch.no_grad():
            for i, x in enumerate(inputs):
                ref = [r.numpy()[0] for r in TupleOutputs(reference)(x)]
                got = run_ncnn(tmp_param, tmp_bin, {in_blobs[0]: x.numpy()[0]}, out_blobs)
                res = compare_tensors(ref, got, atol, rtol, out_blobs)
                res['input_shape'] = list(x.shape)
                checks.append(res)
                if det_check is not None:
                    from ..runtime.postprocess import decode_outputs
                    dets = decode_outputs(got, det_check['postprocess'], tuple(x.shape[2:]))
                    dres = compare_detections(det_check['torch_dets'][i], dets, det_check['box_atol'],
                                              det_check['score_atol'], det_check['postprocess']['test_cfg'],
                                              *det_check['scales'][i])
                    dres['input_shape'] = list(x.shape)
                    checks.append(dres)
        parity = summarize(checks)
        report = dict(model=param.name, weights=bin_path.name, format='ncnn', converter='pnnx',
                      input_blob=in_blobs[0], output_blobs=out_blobs, dynamic=dynamic,
                      input_shape=list(inputs[0].shape), fp16_weights=fp16_weights,
                      layer_types=_layer_types(tmp_param), torch=torch.__version__,
                      export_seconds=round(time.perf_counter() - t0, 2), **(meta or {}), parity=parity)
        require_parity(param, parity, verbose)
        tmp_report.write_text(json.dumps(report, indent=2) + '\n')
    return report


def export_backbone_ncnn(backbone: nn.Module, out: str | os.PathLike, input_shape: Sequence[int] = (1, 3, 224, 224),
                         fold_bn: bool = True, dynamic: bool = False, fp16_weights: bool = False,
                         atol: float = 5e-3, rtol: float = 5e-3, seed: int = 0,
                         verbose: bool = True) -> dict[str, Any]:
    """Backbone -> ncnn (BN folded), checked against the unfolded PyTorch backbone on random inputs."""
    shape = check_input_shape(input_shape)
    reference, model = prepare_for_export(backbone, fold_bn)
    inputs = random_check_inputs(shape, dynamic, seed, second_batch=1)  # ncnn runs one image at a time
    meta = backbone_meta(backbone, fold_bn)
    return export_ncnn(TupleOutputs(model), out, inputs, TupleOutputs(reference), dynamic=dynamic,
                       fp16_weights=fp16_weights, atol=atol, rtol=rtol, meta=meta, verbose=verbose)


def export_detector_ncnn(detector: nn.Module, out: str | os.PathLike, images: Sequence[torch.Tensor],
                         fold_bn: bool = True, dynamic: bool = False, fp16_weights: bool = False,
                         atol: float = 5e-3, rtol: float = 5e-3, box_atol: float = 1.0, score_atol: float = 5e-3,
                         verbose: bool = True) -> dict[str, Any]:
    """RetinaNet-like or lite detector -> ncnn raw head outputs (NMS outside, see module docstring).

    Checks the raw tensors (half-precision tolerance) and the detections of the numpy post-processing run on ncnn's
    outputs against mmdet's ``predict`` on the same normalised images (``box_atol`` px, ``score_atol``, equal
    labels). Lite detectors end at their one raw tensor ``(N, C + 4 (R + 1))`` (ncnn drops the batch axis),
    decoded by ``runtime.postprocess.postprocess_gfl``.
    """
    from .detector import export_wrapper, head_output_scales, postprocess_meta
    images = with_second_size(images, dynamic)
    reference, model, folded = prepare_detector(detector, fold_bn)
    post = postprocess_meta(detector)
    torch_dets = [predict_detections(reference, x)[0] for x in images]
    scales = [head_output_scales(reference, x)[0] for x in images]
    det_check = dict(postprocess=post, torch_dets=torch_dets, scales=scales, box_atol=box_atol, score_atol=score_atol)
    meta = detector_meta(detector, folded, False, post)
    return export_ncnn(export_wrapper(model, with_nms=False), out, images,
                       export_wrapper(reference, with_nms=False), dynamic=dynamic,
                       fp16_weights=fp16_weights, atol=atol, rtol=rtol, meta=meta, det_check=det_check,
                       verbose=verbose)
