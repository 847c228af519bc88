"""The ncnn int8 model of an ncnn export, under the same accuracy gate as the ONNX Runtime path:
:func:`quantize_ncnn` calibrates the fp32 ncnn model on the calibration tensors of :mod:`.calibration`, writes the
int8 model (:mod:`.ncnn_int8`) into a private scratch folder, opens both with the torch-free runtime's
:class:`~shufflenet_det.runtime.ncnn_model.NcnnModel` (fp16 off: fp32 against int8, nothing else), scores them on the
validation set - COCO bbox mAP of the detections decoded by ``runtime.postprocess`` (:mod:`.detection`), the raw
outputs' errors (parity) - times both, and writes ``<out>.param`` / ``.bin`` / ``.json`` atomically, or refuses
(:class:`.config.AccuracyGateError`) and writes nothing.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Sequence

import numpy as np

from ...runtime.ncnn_file import NcnnFormatError, read_ncnn
from .calibration import ValidationSet, calibration_tensors
from .config import AccuracyGateError, QuantConfig, QuantizationError
from .detection import model_kind, scorable_session
from .gate import gate_failures
from .measure import measure_latency
from .ncnn_int8 import blob_scale, calibrate, fp32_blob_runner, quantize_model, resolve_layers
from .ort_calls import scratch_dir

#: Fields of the export's report that describe the int8 model too (what the runtime's NcnnModel reads).
COPIED = ('what', 'detector', 'backbone', 'input_blob', 'output_blobs', 'input_shape', 'dynamic', 'bn_folded',
          'with_nms', 'classes', 'postprocess', 'preprocess', 'converter', 'layer_types', 'fp16_weights')


def ncnn_files(base: str | Path) -> tuple[Path, Path, Path]:
    """``(param, bin, json)`` of a model given as ``name`` or ``name.param``."""
    from ..ncnn_export import ncnn_paths
    return ncnn_paths(base)


class NcnnSession:
    """An ncnn model (runtime :class:`NcnnModel`, fp16 off) that answers like an ONNX Runtime session: one
    ``(1, 3, H, W)`` input, the outputs with their batch axis, so that :func:`..evaluate.evaluate_onnx`,
    :class:`.detection.DetectionsSession` and :func:`.measure.time_models` use it unchanged."""

    def __init__(self, param: str | Path, threads: int = 1) -> None:
        from ...runtime.ncnn_model import NcnnModel
        self.model = NcnnModel(param, threads=threads, fp16=False)

    def get_inputs(self) -> list[Any]:  # noqa: D102
        return [SimpleNamespace(name=self.model.input_blob, shape=self.model.input_shape)]

    def get_outputs(self) -> list[Any]:  # noqa: D102
        return [SimpleNamespace(name=n, type='tensor(float)') for n in self.model.output_blobs]

    def run(self, output_names: Sequence[str] | None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:  # noqa: D102
        x = next(iter(feed.values()))
        mat, keep = self.model.tensor_mat(x)
        outs = dict(zip(self.model.output_blobs, self.model.run(mat)))
        del keep
        return [outs[n][None] for n in (output_names or self.model.output_blobs)]


def output_parity(fsess: NcnnSession, qsess: NcnnSession, tensors: Sequence[np.ndarray]) -> dict[str, Any]:
    """Per output over ``tensors``: ``max_abs_diff`` of int8 against fp32, ``max_abs_ref`` (the fp32 magnitude),
    ``relative_max`` (their ratio) and ``relative_l2`` (``||int8 - fp32|| / ||fp32||``, the ONNX path's output
    error)."""
    names = fsess.model.output_blobs
    acc = {n: dict(diff=0.0, ref=0.0, d2=0.0, r2=0.0) for n in names}
    for x in tensors:
        for n, f, q in zip(names, fsess.run(None, {'x': x}), qsess.run(None, {'x': x})):
            d = q.astype(np.float64) - f
            a = acc[n]
            a['diff'] = max(a['diff'], float(np.abs(d).max()))
            a['ref'] = max(a['ref'], float(np.abs(f).max()))
            a['d2'] += float(np.sum(d * d))
            a['r2'] += float(np.sum(f.astype(np.float64) ** 2))
    return {n: dict(max_abs_diff=a['diff'], max_abs_ref=a['ref'], relative_max=a['diff'] / max(a['ref'], 1e-12),
                    relative_l2=float(np.sqrt(a['d2'] / max(a['r2'], 1e-24)))) for n, a in acc.items()}


def score_ncnn(report: dict[str, Any], param: Path, fsess: NcnnSession, qsess: NcnnSession,
               validation: ValidationSet, size: Sequence[int], preprocess: dict[str, Any],
               say: Callable[[str], None]) -> dict[str, Any]:
    """Both models on the validation set: COCO bbox mAPs and the drop (detectors with a decoder), and the parity
    of the raw outputs (:func:`output_parity`); ``output_error`` is its ``relative_l2`` per output."""
    from ..evaluate import evaluate_onnx
    out: dict[str, Any] = {}
    f_scored, q_scored = scorable_session(report, fsess), scorable_session(report, qsess)
    if f_scored is not None:
        for which, sess in (('float', f_scored), ('int8', q_scored)):
            r = evaluate_onnx(param, validation.ann_file, validation.img_dir, validation.classes, size, preprocess,
                              limit=validation.limit, session=sess)
            out.update({which: r['onnx'], 'num_images': r['num_images'], f'{which}_detections': r['onnx_detections']})
        out['map_drop'] = out['float']['bbox_mAP'] - out['int8']['bbox_mAP']
        say(f"[quantize] bbox mAP on {out['num_images']} validation images: fp32 {out['float']['bbox_mAP']:.4f}, "
            f"int8 {out['int8']['bbox_mAP']:.4f} (drop {out['map_drop']:+.4f}); detections {out['float_detections']} "
            f"-> {out['int8_detections']}")
    elif model_kind(report) == 'raw-detector':
        out['map_unavailable'] = ('no decoder for these raw outputs (postprocess.decoder '
                                  f"{(report.get('postprocess') or {}).get('decoder')!r})")
    val = calibration_tensors(validation.paths(), size, preprocess, 1)
    parity = output_parity(fsess, qsess, val)
    out['parity'] = parity
    out['output_error'] = {n: p['relative_l2'] for n, p in parity.items()}
    out['output_error_images'] = len(val)
    say('[quantize] int8 vs fp32 ncnn on the validation images, max |diff| / max |fp32| per output: '
        + ', '.join(f"{n} {p['relative_max']:.4f}" for n, p in parity.items()))
    return out


def quantize_ncnn(param: str | Path, out: str | Path, report: dict[str, Any], calibration: Sequence[np.ndarray],
                  config: QuantConfig | None = None, *, validation: ValidationSet | None = None,
                  size: Sequence[int] | None = None, preprocess: dict[str, Any] | None = None,
                  max_map_drop: float | None = 0.02, max_output_error: float | None = None, bench_runs: int = 50,
                  threads: int = 1, calibration_info: dict[str, Any] | None = None,
                  log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Quantize the ncnn export ``param`` (``.param`` + ``.bin``; ``report`` its ``.json``) to int8 and write
    ``<out>.param`` / ``.bin`` / ``.json`` unless it loses more than allowed.

    ``config``: ``method`` (``minmax`` / ``percentile`` / ``entropy``), ``percentile``, ``exclude`` (layer names) and
    ``exclude_final_convs``; its ONNX Runtime-only fields are not used. The gate and its ``max_map_drop`` /
    ``max_output_error`` are those of :func:`.gate.quantize_onnx`. Returns the report written to ``<out>.json``.
    """
    from ...utils.io import atomic_outputs
    config = (config or QuantConfig()).validate()
    src_param, src_bin, _ = ncnn_files(param)
    out_param, out_bin, out_json = ncnn_files(out)
    if out_param.resolve() == src_param.resolve():
        raise ValueError(f'output {str(out_param)!r} is the fp32 model itself; choose another name')
    for name, value in (('max_map_drop', max_map_drop), ('max_output_error', max_output_error)):
        if value is not None and not value >= 0:
            raise ValueError(f'{name} must be >= 0 (or None), got {value}')
    if validation is not None and (size is None or preprocess is None):
        raise ValueError('scoring on a validation set needs the size and preprocess its images are prepared with')
    if not calibration:
        raise ValueError('no calibration tensors')
    model_kind(report)
    say = log or (lambda _: None)
    t0 = time.perf_counter()
    try:
        model = read_ncnn(src_param, src_bin)
    except NcnnFormatError as exc:
        raise QuantizationError(str(exc)) from None
    layers, excluded = resolve_layers(config, model)
    chosen = [lay for lay in layers if lay['name'] not in excluded]
    if not chosen:
        raise QuantizationError(f'every quantizable layer of {str(src_param)!r} is kept in float: nothing to quantize')
    say(f'[quantize] {len(layers)} Convolution / ConvolutionDepthWise / InnerProduct layers, kept in float: '
        f'{len(excluded)}; calibrating the fp32 ncnn model on {len(calibration)} tensors ({config.method})')
    runner = fp32_blob_runner(src_param, src_bin, report['input_blob'], threads)
    thresholds = calibrate(runner, calibration, [lay['bottom'] for lay in chosen], config.method, config.percentile)
    del runner
    int8, written = quantize_model(model, {lay['name']: blob_scale(thresholds[lay['bottom']]) for lay in chosen})
    for entry, lay in zip(written, chosen):
        entry.update(bottom_blob=lay['bottom'], threshold=thresholds[lay['bottom']])
    base = {k: report[k] for k in COPIED if k in report}
    with scratch_dir('shufflenet_det_ncnn_int8_') as work:
        w_param, w_bin, w_json = ncnn_files(work / 'int8')
        int8.write(w_param, w_bin)
        w_json.write_text(json.dumps(base))
        f_copy = ncnn_files(work / 'fp32')
        shutil.copyfile(src_param, f_copy[0])
        shutil.copyfile(src_bin, f_copy[1])
        f_copy[2].write_text(json.dumps(base))
        try:
            fsess, qsess = NcnnSession(f_copy[0], threads), NcnnSession(w_param, threads)
        except ValueError as exc:
            raise QuantizationError(f'ncnn cannot load the int8 model written for {str(src_param)!r}: {exc}') from None
        accuracy: dict[str, Any] = dict(max_map_drop=max_map_drop, max_output_error=max_output_error)
        if validation is not None and size is not None and preprocess is not None:
            accuracy.update(score_ncnn(report, src_param, fsess, qsess, validation, size, preprocess, say))
        latency = measure_latency(fsess, qsess, calibration[0], bench_runs, threads, say) if bench_runs else None
        failures = gate_failures(accuracy, max_map_drop, max_output_error)
        accuracy['passed'] = not failures
        kept = {why: [n for n, w in excluded.items() if w == why] for why in sorted(set(excluded.values()))}
        result = dict(model=out_param.name, weights=out_bin.name, format='ncnn', **base, quantization=dict(
            source=str(src_param), tool='shufflenet_det ncnn int8 writer (ncnn2table + ncnn2int8 format)',
            format='ncnn int8 (int8_scale_term)', weights='int8 per output channel (per group for depthwise) '
            'symmetric, 127 / max|w| (31 / max|w|: 3x3 stride-1 Convolution, as ncnn2table)',
            activations='int8 symmetric, one scale per bottom blob', config=dict(
                method=config.method, percentile=config.percentile, exclude=list(config.exclude),
                exclude_final_convs=config.exclude_final_convs),
            calibration=dict(num_tensors=len(calibration), **(calibration_info or {})),
            quantized_convs=len(written), float_convs=len(layers) - len(written), kept_in_float=kept,
            layers=written), accuracy=accuracy, latency=latency,
            measured_with='ncnn fp32 and int8, fp16 storage / arithmetic off, on this machine', seconds=None)
        if failures:
            raise AccuracyGateError(f'int8 model of {str(src_param)!r} refused, nothing written: '
                                    + '; '.join(failures), result)
        result['seconds'] = round(time.perf_counter() - t0, 2)
        with atomic_outputs([out_param, out_bin, out_json], 'ncnn int8 model') as (tp, tb, tj):
            shutil.copyfile(w_param, tp)
            shutil.copyfile(w_bin, tb)
            tj.write_text(json.dumps(result, indent=2) + '\n')
    return result
