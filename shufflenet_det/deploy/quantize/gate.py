"""The accuracy gate and the int8 model's report: :func:`quantize_onnx` quantizes, measures, refuses a model that
loses more than allowed (:class:`.config.AccuracyGateError`, nothing written) and otherwise writes the int8 model and
``<out>.json`` atomically; :func:`quantize_unchecked` is the same quantization without measuring or gate (the
benchmark's ``ort-int8`` row)."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .calibration import ValidationSet
from .config import AccuracyGateError, QuantConfig
from .detection import model_kind
from .graph import check_float_model, grouped, quantized_convs, resolve_exclusions
from .measure import cpu_session, measure_latency, score_models, sensitivity_report
from .ort_calls import preprocess_for_quantization, quantize_file, runtime_convs, scratch_dir


def quantize_unchecked(model_path: str | os.PathLike, out_path: str | os.PathLike, calibration: Sequence[np.ndarray],
                       config: QuantConfig | None = None, input_name: str = 'input') -> dict[str, Any]:
    """Quantize without scoring (the benchmark's ``ort-int8`` row): ``out_path`` and what was kept in float.

    The same steps as :func:`quantize_onnx` up to the QDQ model (no sensitivity, no gate, no report file); the
    output is written atomically. Returns ``quantized_convs``, ``float_convs`` and ``kept_in_float``.
    """
    import onnx

    from ...utils.io import atomic_outputs
    config = (config or QuantConfig()).validate()
    if config.exclude_sensitive:
        raise ValueError('exclude_sensitive needs the sensitivity report of quantize_onnx')
    with scratch_dir() as work:
        pre, int8 = work / 'float.onnx', work / 'int8.onnx'
        preprocess_for_quantization(model_path, pre)
        pre_model = onnx.load(str(pre))
        check_float_model(pre_model, model_path)
        convs, excluded = resolve_exclusions(config, pre_model)
        quantize_file(pre, int8, calibration, input_name, config, list(excluded))
        quantized = quantized_convs(onnx.load(str(int8)))
        with atomic_outputs([out_path], 'int8 model') as (tmp,):
            shutil.copyfile(int8, tmp)
    return dict(quantized_convs=len(quantized), float_convs=len(convs) - len(quantized),
                kept_in_float=grouped(excluded))


def copy_fields(report: dict[str, Any]) -> dict[str, Any]:
    """The fields of the float model's report that describe the int8 model too (inputs, outputs, classes, ...)."""
    keep = ('what', 'detector', 'backbone', 'input_name', 'output_names', 'input_shape', 'dynamic', 'opset',
            'bn_folded', 'with_nms', 'classes', 'postprocess', 'out_channels', 'out_strides')
    return {k: report[k] for k in keep if k in report}


def gate_failures(accuracy: dict[str, Any], max_map_drop: float | None, max_output_error: float | None
                  ) -> list[str]:
    """Why the int8 model is refused ([] when it passes)."""
    failures = []
    if max_map_drop is not None and 'map_drop' in accuracy and accuracy['map_drop'] > max_map_drop + 1e-12:
        failures.append(f"bbox mAP drops by {accuracy['map_drop']:.4f} (float {accuracy['float']['bbox_mAP']:.4f} -> "
                        f"int8 {accuracy['int8']['bbox_mAP']:.4f}), more than --max-map-drop {max_map_drop}")
    if max_output_error is not None:
        bad = {k: v for k, v in (accuracy.get('output_error') or {}).items() if not v <= max_output_error}
        if bad:
            failures.append(f'output error {bad} exceeds --max-output-error {max_output_error}')
    return failures


def quantize_onnx(model_path: str | os.PathLike, out_path: str | os.PathLike, report: dict[str, Any],
                  calibration: Sequence[np.ndarray], config: QuantConfig | None = None, *,
                  validation: ValidationSet | None = None, size: Sequence[int] | None = None,
                  preprocess: dict[str, Any] | None = None, max_map_drop: float | None = 0.02,
                  max_output_error: float | None = None, sensitivity_images: int = 8, bench_runs: int = 50,
                  threads: int = 2, calibration_info: dict[str, Any] | None = None,
                  log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Quantize an exported ONNX model to int8 and write it with its report, unless it loses too much accuracy.

    ``report`` is the export report of ``model_path`` (``<model>.onnx.json``); ``calibration`` the input tensors
    (:func:`.calibration.calibration_tensors`). With ``validation`` (and the ``size`` and ``preprocess`` its images
    are prepared with), the float and the int8 model are scored on it (:func:`.measure.score_models`): COCO bbox mAP
    for detectors (with NMS in the graph, or a :data:`.detection.RAW_DECODERS` decoder), and the relative error of
    every float output for graphs without NMS. The gate: :class:`AccuracyGateError` (nothing written) when the mAP
    drops by more than ``max_map_drop`` or an output error exceeds ``max_output_error`` (None: not checked).
    ``bench_runs`` > 0 times both models in the same rounds with ``threads`` threads. Returns the report written to
    ``<out>.json``.
    """
    import onnx
    import onnxruntime as ort

    from ...utils.io import atomic_outputs
    from ..onnx_export import report_path_of
    config = (config or QuantConfig()).validate()
    model_path, out_path = Path(model_path), Path(out_path)
    if out_path.suffix != '.onnx':
        raise ValueError(f'output {str(out_path)!r} must end with .onnx')
    if out_path.resolve() == model_path.resolve():
        raise ValueError(f'output {str(out_path)!r} is the float model itself; choose another path')
    if max_map_drop is not None and not max_map_drop >= 0:
        raise ValueError(f'max_map_drop must be >= 0 (or None), got {max_map_drop}')
    if max_output_error is not None and not max_output_error >= 0:
        raise ValueError(f'max_output_error must be >= 0 (or None), got {max_output_error}')
    if sensitivity_images < 0 or bench_runs < 0 or threads < 0:
        raise ValueError('sensitivity_images, bench_runs and threads must be >= 0')
    if config.exclude_sensitive and not (sensitivity_images and len(calibration)):
        raise ValueError('exclude_sensitive needs the sensitivity report: sensitivity_images must be >= 1')
    if validation is not None and (size is None or preprocess is None):
        raise ValueError('scoring on a validation set needs the size and preprocess its images are prepared with')
    model_kind(report)  # ValueError for a report that is not an export's
    say = log or (lambda _: None)
    input_name = report.get('input_name', 'input')
    t0 = time.perf_counter()
    with scratch_dir() as work:
        pre, int8, cache = work / 'float.onnx', work / 'int8.onnx', work / 'calibration.json'
        preprocess_for_quantization(model_path, pre)
        pre_model = onnx.load(str(pre))
        check_float_model(pre_model, model_path)
        convs, excluded = resolve_exclusions(config, pre_model)
        groups = grouped(excluded)
        say(f'[quantize] {len(convs)} convolutions, kept in float: '
            + (', '.join(f'{len(v)} {k}' for k, v in groups.items()) or 'none')
            + f' (nodes); calibrating on {len(calibration)} tensors ({config.method})')
        quantize_file(pre, int8, calibration, input_name, config, list(excluded), cache)
        sens_tensors = list(calibration[:sensitivity_images])
        sensitivity = sensitivity_report(pre, int8, sens_tensors, input_name, threads) if sens_tensors else []
        if config.exclude_sensitive:
            top = [e['node'] for e in sensitivity if e['quantized']][:config.exclude_sensitive]
            for name in top:
                excluded.setdefault(name, 'sensitivity')
            say(f'[quantize] keeping the {len(top)} most sensitive convolutions in float: {top}')
            quantize_file(pre, int8, calibration, input_name, config, list(excluded), cache)
        qmodel = onnx.load(str(int8))
        ops = [n.op_type for n in qmodel.graph.node]
        quantized = quantized_convs(qmodel)
        runtime = runtime_convs(int8, work)
        conv_names = {c['name'] for c in convs}
        requantized = sorted(n for n in excluded if n in conv_names and n in set(runtime['int8_nodes']))
        if requantized:  # not expected after keep_outputs_float; reported, never hidden
            say(f'[quantize] warning: onnxruntime runs these convolutions kept in float in int8: {requantized}')
        fsess, qsess = cpu_session(model_path, threads), cpu_session(int8, threads)
        accuracy = dict(max_map_drop=max_map_drop, max_output_error=max_output_error)
        if validation is not None and size is not None and preprocess is not None:  # all three: checked above
            accuracy.update(score_models(report, model_path, fsess, qsess, validation, size, preprocess, say))
        latency = measure_latency(fsess, qsess, calibration[0], bench_runs, threads, say) if bench_runs else None
        failures = gate_failures(accuracy, max_map_drop, max_output_error)
        accuracy['passed'] = not failures
        result = dict(model=out_path.name, format='onnx', **copy_fields(report), quantization=dict(
            source=str(model_path), tool=f'onnxruntime {ort.__version__} quantize_static', format='QDQ',
            weights=f"int8 {'per-channel' if config.per_channel else 'per-tensor'} symmetric"
                    f"{' (7-bit reduce_range)' if config.reduce_range else ''}",
            activations=config.activation_type, config=config.as_dict(), calibration=dict(
                num_tensors=len(calibration), **(calibration_info or {})),
            quantized_convs=len(quantized), float_convs=len(convs) - len(quantized),
            onnxruntime_convs=runtime, requantized_by_onnxruntime=requantized,
            kept_in_float=grouped(excluded), op_counts=dict(QuantizeLinear=ops.count('QuantizeLinear'),
                                                            DequantizeLinear=ops.count('DequantizeLinear'))),
            accuracy=accuracy, latency=latency, sensitivity=dict(
                images=len(sens_tensors), layers=sensitivity,
                metric='||int8 - float|| / ||float|| of the dequantized conv input / output; added_error = '
                       'output_error - input_error'),
            seconds=None)
        if failures:
            raise AccuracyGateError(f'int8 model of {str(model_path)!r} refused, nothing written: '
                                    + '; '.join(failures), result)
        result['seconds'] = round(time.perf_counter() - t0, 2)
        with atomic_outputs([out_path, report_path_of(out_path)], 'int8 model') as (tmp, tmp_report):
            shutil.copyfile(int8, tmp)
            tmp_report.write_text(json.dumps(result, indent=2) + '\n')
    return result
