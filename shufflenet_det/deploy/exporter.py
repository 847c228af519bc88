"""The export skeleton, written once for every backend: build -> fold -> export -> check -> report -> atomic write.

* **build** and **fold** (:func:`build_backbone_job`, :func:`build_detector_job`): the reference (the model as
  given, eval mode) and the deployable copy (every BN folded by ``switch_to_deploy``), the module that is exported
  (a backbone's outputs as a tuple; a detector's export wrapper from its head's deploy form, :mod:`.detector`), the
  check inputs and the model description of the report - an :class:`ExportJob`, the same for every backend;
* **export** (:meth:`ExportBackend.convert`): the backend writes its files into the temporary paths;
* **check** (:func:`check_parity`): the written model is run by the backend (:meth:`ExportBackend.run`) on every
  check input and compared with the reference by :mod:`.parity`'s rules - raw tensors (backbone features, a
  detector's raw head outputs), and for detectors the detections (the graph's own with NMS in the graph, otherwise
  ``runtime.postprocess.decode_outputs`` of the raw outputs, driven by the report's ``postprocess`` entry) against
  mmdet's ``predict``;
* **report** and **atomic write** (:func:`run_export`): the backend's fields, ``export_seconds``, the model
  description and the parity result, written as JSON next to the model; the model files and the report are renamed
  into place together, only when the check passed (a failure of any step leaves nothing behind).

The backends (:class:`.onnx_export.OnnxBackend`, :class:`.ncnn_export.NcnnBackend`) supply the export and run steps,
their output paths, input constraints and report fields.
"""
from __future__ import annotations

import json
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
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
from .parity import compare_detections, compare_tensors, summarize


@dataclass
class ExportJob:
    """What the build and fold steps made; the same for every backend.

    ``model`` (deployable) and ``reference`` return tuples of tensors: for a detector exported with NMS ``model``
    returns the detections and ``reference`` the raw head outputs (their magnitudes scale the tolerances).
    """

    model: nn.Module
    reference: nn.Module
    inputs: list[torch.Tensor]
    output_names: list[str]
    #: Per output, the axes that are dynamic in a dynamic export (index -> name).
    output_axes: dict[str, dict[int, str]]
    meta: dict[str, Any]
    dynamic: bool
    #: The reference detector (its ``predict`` gives the expected detections); None for backbones.
    detector: nn.Module | None = None
    with_nms: bool = False
    postprocess: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Tolerances:
    """``atol`` / ``rtol`` of the tensor rule, ``box_atol`` / ``score_atol`` of the detection rule (:mod:`.parity`)."""

    atol: float
    rtol: float
    box_atol: float = 0.0
    score_atol: float = 0.0


class ExportBackend(ABC):
    """The backend steps of :func:`run_export`; one instance per export (it keeps the temporary files' state)."""

    #: ``format`` of the report.
    format: ClassVar[str] = ''
    #: The outputs in messages (:func:`~shufflenet_det.utils.io.atomic_outputs`).
    what: ClassVar[str] = 'output'
    #: The step in the message of a failed export.
    step: ClassVar[str] = 'export'
    #: Whether :meth:`run` returns the outputs with their batch axis (else batch 1, axis dropped, as ncnn).
    batch_axis: ClassVar[bool] = True

    @abstractmethod
    def output_paths(self, out: str | os.PathLike) -> list[Path]:
        """The final paths, the report last (ValueError for a bad path or option)."""

    def check_inputs(self, job: ExportJob) -> None:
        """ValueError for check inputs the backend cannot run: a static export's at another shape than the first
        (the export example)."""
        shape = tuple(job.inputs[0].shape)
        if not job.dynamic and any(tuple(x.shape) != shape for x in job.inputs):
            raise ValueError(f'static {self.format} export at {shape}: every check input must have that shape')

    @abstractmethod
    def convert(self, job: ExportJob, files: list[Path]) -> None:
        """Export ``job.model`` into the temporary ``files`` (the output paths but the report)."""

    @abstractmethod
    def run(self, x: torch.Tensor) -> list[np.ndarray]:
        """The written model's outputs on ``x``."""

    def output_names(self, job: ExportJob) -> list[str]:
        """The names of :meth:`run`'s outputs."""
        return job.output_names

    @abstractmethod
    def report_fields(self, job: ExportJob) -> dict[str, Any]:
        """The report's first fields (file names, format, converter, versions)."""


# ---------------------------------------------------------------------------------------------------- build + fold
def build_backbone_job(backbone: nn.Module, input_shape: Sequence[int], *, fold_bn: bool, dynamic: bool, seed: int,
                       second_batch: int | None = None, meta_extra: dict[str, Any] | None = None) -> ExportJob:
    """A backbone (BN folded unless ``fold_bn=False``) on random check inputs (:func:`.export_common.
    random_check_inputs`); outputs ``feat0..``; ``meta_extra`` goes into the report's model description."""
    shape = check_input_shape(input_shape)
    reference, model = prepare_for_export(backbone, fold_bn)
    wrapped = TupleOutputs(model).eval()
    inputs = random_check_inputs(shape, dynamic, seed, second_batch=second_batch)
    with torch.no_grad():
        names = [f'feat{i}' for i in range(len(wrapped(inputs[0])))]
    axes = {n: {0: 'batch', 2: f'{n}_h', 3: f'{n}_w'} for n in names}
    return ExportJob(wrapped, TupleOutputs(reference).eval(), inputs, names, axes,
                     backbone_meta(backbone, fold_bn, **(meta_extra or {})), dynamic)


def build_detector_job(detector: nn.Module, images: Sequence[torch.Tensor], *, fold_bn: bool, dynamic: bool,
                       with_nms: bool, meta_extra: dict[str, Any] | None = None) -> ExportJob:
    """A detector's export wrapper (its head's deploy form, :func:`.detector.export_wrapper`; BN folded where it
    can be, :func:`.export_common.prepare_detector`) on normalised check ``images`` (1, 3, H, W): the first is the
    export example; a static export needs them all at its size, a dynamic one gets a second size if they have one.
    """
    from .detector import export_wrapper, postprocess_meta
    if not images:
        raise ValueError('a detector export needs at least one check image')
    shape = check_input_shape(images[0].shape)
    if not dynamic and any(tuple(im.shape) != shape for im in images):
        raise ValueError(f'static export at {shape}: every check image must have that shape, got '
                         f'{sorted({tuple(im.shape) for im in images})}')
    images = with_second_size(images, dynamic)
    post = postprocess_meta(detector)  # before folding: an unsupported head fails here, naming its type
    reference, model, folded = prepare_detector(detector, fold_bn)
    wrapper = export_wrapper(model, with_nms=with_nms).eval()
    names = wrapper.output_names
    meta = detector_meta(detector, folded, with_nms, post, **(meta_extra or {}))
    return ExportJob(wrapper, export_wrapper(reference, with_nms=False).eval(), images, names,
                     {n: {0: 'batch'} for n in names}, meta, dynamic, detector=reference, with_nms=with_nms,
                     postprocess=post)


# ---------------------------------------------------------------------------------------------------- check
def check_parity(backend: ExportBackend, job: ExportJob, tol: Tolerances) -> dict[str, Any]:
    """Run the written model on every check input and compare it with the reference (see module docstring)."""
    from ..runtime.postprocess import decode_outputs
    from .detector import head_output_scales
    names = backend.output_names(job)
    checks = []
    for x in job.inputs:
        got = backend.run(x)
        with torch.no_grad():
            raw = job.reference(x)
        if not job.with_nms:
            ref = list(raw) if backend.batch_axis else [r[0] for r in raw]
            res = compare_tensors(ref, got, tol.atol, tol.rtol, names)
            res['input_shape'] = list(x.shape)
            checks.append(res)
        if job.detector is None:
            continue
        hw = (int(x.shape[2]), int(x.shape[3]))
        scales = head_output_scales(job.detector, x, raw)
        for i, ref_dets in enumerate(predict_detections(job.detector, x)):
            if job.with_nms:
                dets = unpad_detections(*got)[i]
            else:
                dets = decode_outputs([o[i:i + 1] for o in got] if backend.batch_axis else got, job.postprocess, hw)
            res = compare_detections(ref_dets, dets, tol.box_atol, tol.score_atol, job.postprocess['test_cfg'],
                                     *scales[i])
            res['input_shape'] = list(x.shape)
            checks.append(res)
    return summarize(checks)


# ---------------------------------------------------------------------------------------------------- the skeleton
def run_export(backend: ExportBackend, job: ExportJob, out: str | os.PathLike, tol: Tolerances,
               verbose: bool = True) -> dict[str, Any]:
    """Export ``job`` with ``backend``, check it, and write the model files and the report atomically; the report.

    ExportError when the export or the parity check fails (nothing is written); ValueError for bad arguments; an
    interruption (SIGTERM / SIGINT) inside the exporter stays an interruption.
    """
    for x in job.inputs:
        check_input_shape(x.shape)
    paths = backend.output_paths(out)
    backend.check_inputs(job)
    t0 = time.perf_counter()
    # the model files and their report are renamed into place together: never one without the others
    with atomic_outputs(paths, backend.what) as tmps:
        try:
            backend.convert(job, tmps[:-1])
        except (ValueError, ExportError, OSError):  # OSError: a full or read-only disk, reported as such
            raise
        except Exception as exc:  # any exporter / converter failure becomes one clear error
            reraise_interrupt(exc)
            raise ExportError(f'{backend.step} to {str(paths[0])!r} failed: {type(exc).__name__}: {exc}') from exc
        parity = check_parity(backend, job, tol)
        report = dict(backend.report_fields(job), export_seconds=round(time.perf_counter() - t0, 2), **job.meta,
                      parity=parity)
        require_parity(paths[0], parity, verbose)
        tmps[-1].write_text(json.dumps(report, indent=2) + '\n')
    return report
