"""ncnn export (ARM phones and boards) through pnnx, checked against PyTorch.

pnnx traces the model, lowers it to ncnn and writes ``<name>.param`` / ``<name>.bin``; the channel split of the
ShuffleNet blocks becomes an ncnn ``Slice`` and the view/transpose channel shuffle a ``ShuffleChannel`` layer.
:class:`NcnnBackend` is the ncnn part of the export skeleton (:mod:`.exporter`: build, fold, export, check, report,
atomic write): pnnx runs in a scratch folder; the model, its ``.bin`` and a ``<name>.json`` side-car (parity report,
blob names, input size, and for detectors the post-processing description) are renamed into place only when the
parity check passes.

The deploy rewrite of the ncnn files (``graph_opt``, on by default): channel counts that ncnn cannot pack are padded
with zero channels (:func:`.ncnn_pad.pad_ncnn_regions`), checked by the same parity check as everything else.

Detectors are exported without NMS (ncnn has no NMS layer matching mmdet's post-processing): the graph ends at the raw
head tensors and ``runtime.postprocess.decode_outputs`` (used by ``tools/deploy/ncnn_runner.py``) decodes and
suppresses boxes outside. Parity is checked with ncnn's default options, i.e. fp16 storage/arithmetic where the CPU
has them, so the tolerances are those of half precision.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..runtime.ncnn_file import NcnnFormatError, read_ncnn
from ..runtime.ncnn_param import extract_blobs, load_net
from ..utils.io import check_writable_dir
from .export_common import ExportError
from .exporter import ExportBackend, ExportJob, Tolerances, build_backbone_job, build_detector_job, run_export
from .ncnn_pad import NCNN_PAD_MULTIPLE, pad_ncnn_regions


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
    arrays = {name: np.ascontiguousarray(arr, dtype=np.float32) for name, arr in inputs.items()}
    try:  # ncnn.Mat(array) does not copy: ``arrays`` keeps them alive while the network runs
        net = load_net(param, bin_path, threads, fp16)
        return extract_blobs(net, {name: ncnn.Mat(arr) for name, arr in arrays.items()}, outputs, param)
    except (ValueError, RuntimeError) as exc:
        raise ExportError(str(exc)) from None


def apply_ncnn_graph_opt(param: Path, bin_path: Path) -> dict[str, Any]:
    """The deploy rewrite of a pnnx output, in place: :func:`.ncnn_pad.pad_ncnn_regions` to a multiple of
    :data:`.ncnn_pad.NCNN_PAD_MULTIPLE`; returns ``{'channel_padding': regions}`` for the report. A model with a
    layer whose weights :mod:`shufflenet_det.runtime.ncnn_file` cannot cut is left as it is (``channel_padding``
    0 and ``skipped`` saying why)."""
    try:
        model = read_ncnn(param, bin_path)
    except NcnnFormatError as exc:
        return dict(channel_padding=0, skipped=str(exc))
    padded = pad_ncnn_regions(model, NCNN_PAD_MULTIPLE)
    if padded:
        model.write(param, bin_path)
    return dict(channel_padding=padded)


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
    # pnnx runs in workdir: every path it is given must be absolute
    workdir, param, bin_path = Path(workdir).resolve(), Path(param).resolve(), Path(bin_path).resolve()
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


class NcnnBackend(ExportBackend):
    """The ncnn steps of :func:`.exporter.run_export`: TorchScript trace + pnnx in a scratch folder, run with ncnn's
    default options (fp16 where the CPU has it); ``<name>.param`` + ``<name>.bin`` + ``<name>.json``. One image at a
    time: check inputs have batch 1 and outputs lose the batch axis."""

    format = 'ncnn'
    what = 'ncnn output'
    step = 'pnnx conversion'
    batch_axis = False

    def __init__(self, fp16_weights: bool = False, graph_opt: bool = True) -> None:
        self.fp16_weights, self.graph_opt = fp16_weights, graph_opt
        self.rewrites: dict[str, Any] | None = None
        self.paths: list[Path] = []
        self.parent = Path()
        self.tmp: list[Path] = []
        self.in_blob = ''
        self.out_blobs: list[str] = []

    def output_paths(self, out: str | os.PathLike) -> list[Path]:
        """:func:`ncnn_paths` of ``out`` (a writable folder)."""
        self.paths = list(ncnn_paths(out))
        self.parent = check_writable_dir(self.paths[0], self.what)
        return self.paths

    def check_inputs(self, job: ExportJob) -> None:
        """Batch 1; a static export's inputs all at the export shape."""
        for x in job.inputs:
            if x.shape[0] != 1:
                raise ValueError(f'ncnn models run one image at a time: batch must be 1, got {tuple(x.shape)}')
        super().check_inputs(job)

    def convert(self, job: ExportJob, files: list[Path]) -> None:
        """pnnx in a scratch folder next to the outputs; the graph's input and output blobs."""
        self.tmp = files
        tmp_param, tmp_bin = files
        # pnnx's scratch folder is named like utils.io's temporaries (``.<name>.<pid>.<random>.tmpdir``), so that
        # the next write into this folder removes it if this process is killed outright; any exception (a full
        # disk, SIGTERM / SIGINT through shufflenet_det.utils.cli) removes it here, and subprocess.run kills a
        # running pnnx first
        workdir = Path(tempfile.mkdtemp(prefix=f'.{self.paths[0].name}.{os.getpid()}.', suffix='.tmpdir',
                                        dir=self.parent))
        try:
            dyn = None
            if job.dynamic:
                dyn = next((x for x in job.inputs[1:] if x.shape != job.inputs[0].shape), None)
                if dyn is None:
                    h, w = job.inputs[0].shape[2:]
                    dyn = torch.zeros(1, 3, h + 32, w + 32)
            pnnx_convert(job.model, job.inputs[0], tmp_param, tmp_bin, workdir, dyn, self.fp16_weights)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if self.graph_opt:
            self.rewrites = apply_ncnn_graph_opt(tmp_param, tmp_bin)
        in_blobs, self.out_blobs = _blob_names(tmp_param)
        if len(in_blobs) != 1:
            raise ExportError(f'expected one input blob, found {in_blobs}')
        self.in_blob = in_blobs[0]

    def run(self, x: torch.Tensor) -> list[np.ndarray]:
        """ncnn's outputs (no batch axis)."""
        return run_ncnn(self.tmp[0], self.tmp[1], {self.in_blob: x.numpy()[0]}, self.out_blobs)

    def output_names(self, job: ExportJob) -> list[str]:
        """The graph's output blobs (pnnx names them ``out0``, ``out1``, ...)."""
        return self.out_blobs

    def report_fields(self, job: ExportJob) -> dict[str, Any]:
        """Files, blobs, shapes, layer counts and versions."""
        param, bin_path = self.paths[:2]
        return dict(model=param.name, weights=bin_path.name, format=self.format, converter='pnnx',
                    input_blob=self.in_blob, output_blobs=self.out_blobs, dynamic=job.dynamic,
                    input_shape=list(job.inputs[0].shape), fp16_weights=self.fp16_weights,
                    layer_types=_layer_types(self.tmp[0]), graph_rewrites=self.rewrites, torch=torch.__version__)


def export_backbone_ncnn(backbone: nn.Module, out: str | os.PathLike, input_shape: Sequence[int] = (1, 3, 224, 224),
                         fold_bn: bool = True, dynamic: bool = False, fp16_weights: bool = False,
                         atol: float = 5e-3, rtol: float = 5e-3, seed: int = 0,
                         verbose: bool = True, graph_opt: bool = True) -> dict[str, Any]:
    """Backbone -> ncnn (BN folded), checked against the unfolded PyTorch backbone on random inputs (the tensor rule
    of :mod:`.parity`, ``|ncnn - torch| <= atol * max(1, max|torch|) + rtol * |torch|``; defaults: half-precision
    tolerance). ``graph_opt``: the deploy rewrite (:func:`apply_ncnn_graph_opt`)."""
    backend = NcnnBackend(fp16_weights, graph_opt)
    # ncnn runs one image at a time: the dynamic export's second input has batch 1
    job = build_backbone_job(backbone, input_shape, fold_bn=fold_bn, dynamic=dynamic, seed=seed, second_batch=1)
    return run_export(backend, job, out, Tolerances(atol, rtol), verbose)


def export_detector_ncnn(detector: nn.Module, out: str | os.PathLike, images: Sequence[torch.Tensor],
                         fold_bn: bool = True, dynamic: bool = False, fp16_weights: bool = False,
                         atol: float = 5e-3, rtol: float = 5e-3, box_atol: float = 1.0, score_atol: float = 5e-3,
                         verbose: bool = True, graph_opt: bool = True) -> dict[str, Any]:
    """Detector (its head's deploy form) -> ncnn raw head outputs (NMS outside, see module docstring).

    Checks the raw tensors (half-precision tolerance) and the detections of the numpy post-processing run on ncnn's
    outputs against mmdet's ``predict`` on the same normalised images (``box_atol`` px, ``score_atol``, equal
    labels; :mod:`.parity`'s detection rule, tolerances scaled by the raw outputs' magnitude). Lite detectors end at
    their one raw tensor ``(N, C + 4 (R + 1))`` (ncnn drops the batch axis), decoded by
    ``runtime.postprocess.postprocess_gfl``. ``graph_opt``: the deploy rewrite (:func:`apply_ncnn_graph_opt`).
    """
    backend = NcnnBackend(fp16_weights, graph_opt)
    job = build_detector_job(detector, images, fold_bn=fold_bn, dynamic=dynamic, with_nms=False)
    return run_export(backend, job, out, Tolerances(atol, rtol, box_atol, score_atol), verbose)
