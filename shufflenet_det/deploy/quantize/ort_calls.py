"""ONNX Runtime's quantization tools, called with everything they write kept in a private folder: its
``quant_pre_process``, ``quantize_static`` (QDQ, calibrated on given tensors, float layers kept float) and the graph
ONNX Runtime builds from a model at session creation (which convolutions it really runs in int8)."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .calibration import calibration_chunk, tensor_reader
from .config import QuantConfig, QuantizationError
from .graph import keep_outputs_float


@contextlib.contextmanager
def scratch_dir(prefix: str = 'shufflenet_det_quant_') -> Iterator[Path]:
    """A private temporary folder, also the process's temporary folder meanwhile (ONNX Runtime's quantization tools
    write their augmented models and shape-inferred copies there); removed with its contents in every case."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    previous = tempfile.tempdir
    tempfile.tempdir = str(path)
    try:
        yield path
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def quiet_ort_logging() -> Iterator[None]:
    """ONNX Runtime's quantization tools log advice through the root logger and its C++ logger; keep both to errors
    meanwhile."""
    import onnxruntime as ort
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    ort.set_default_logger_severity(3)  # the C++ side: its notes on unused initializers after optimisation
    try:
        yield
    finally:
        root.setLevel(level)
        ort.set_default_logger_severity(2)  # onnxruntime's default (warnings)


def preprocess_for_quantization(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """ONNX Runtime's ``quant_pre_process`` (symbolic shape inference is skipped when it cannot handle the graph)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process
    with quiet_ort_logging():
        try:
            quant_pre_process(str(src), str(dst))
        except Exception:  # noqa: BLE001 - symbolic shape inference does not know every op (e.g. NMS graphs)
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)


def quantize_file(src: str | os.PathLike, dst: str | os.PathLike, tensors: Sequence[np.ndarray], input_name: str,
                  config: QuantConfig, exclude: Sequence[str] = (), cache: str | os.PathLike | None = None) -> None:
    """``quantize_static`` of ``src`` (pre-processed) into ``dst``: QDQ, int8 weights, calibrated on ``tensors``.

    ``cache`` (a JSON file) stores the calibrated ranges the first time and reuses them afterwards, so a second
    quantization with other nodes excluded does not calibrate again.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    if not tensors:
        raise ValueError('quantization needs at least one calibration tensor')
    # chunked calibration: the ranges (MinMax) or histograms (entropy, percentile) of each chunk are merged, so
    # memory stays bounded. (CalibMaxIntermediateOutputs would be the other way, but in onnxruntime 1.32 its MinMax
    # calibrator discards the outputs collected before each clear.) Histograms are collected one image at a time:
    # onnxruntime stacks a chunk's values of a tensor into one array, which fails for tensors whose shape depends on
    # the image (the candidates after top-k / NMS).
    chunk = calibration_chunk(len(tensors)) if config.method == 'minmax' else 1
    extra: dict[str, Any] = dict(CalibStridedMinMax=chunk)
    if config.method == 'percentile':
        extra['CalibPercentile'] = float(config.percentile)
    method = {'minmax': CalibrationMethod.MinMax, 'entropy': CalibrationMethod.Entropy,
              'percentile': CalibrationMethod.Percentile}[config.method]
    act = QuantType.QUInt8 if config.activation_type == 'uint8' else QuantType.QInt8
    with quiet_ort_logging(), contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print
        try:
            quantize_static(str(src), str(dst), tensor_reader(input_name, tensors), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(config.op_types) if config.op_types else None,
                            per_channel=config.per_channel, reduce_range=config.reduce_range, activation_type=act,
                            weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude), calibrate_method=method,
                            extra_options=extra, calibration_cache_path=str(cache) if cache else None)
        except (ValueError, OSError):
            raise
        except Exception as exc:  # onnxruntime's own failures become one clear error
            raise QuantizationError(f'onnxruntime quantization of {Path(src).name} failed: '
                                    f'{type(exc).__name__}: {str(exc)[:300]}') from exc
    if exclude:
        import onnx
        model = onnx.load(str(dst))
        if keep_outputs_float(model, exclude):
            onnx.save(model, str(dst))


def runtime_convs(path: str | os.PathLike, workdir: str | os.PathLike) -> dict[str, Any]:
    """How ONNX Runtime (CPU, all optimisations) runs the convolutions of a model, from the graph it optimises at
    session creation: the number of ``int8`` (QLinearConv) and ``float`` (Conv / FusedConv, NCHWc or not) nodes, and
    ``int8_nodes``, the names of the Conv nodes behind its QLinearConvs."""
    import re

    import onnx
    import onnxruntime as ort
    optimized = Path(workdir) / f'{Path(path).stem}.ort_optimized.onnx'
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.optimized_model_filepath = str(optimized)
    opts.log_severity_level = 3
    ort.InferenceSession(str(path), sess_options=opts, providers=['CPUExecutionProvider'])
    nodes = list(onnx.load(str(optimized)).graph.node)
    optimized.unlink()
    ops = [n.op_type for n in nodes]
    return dict(int8=ops.count('QLinearConv'), float=ops.count('Conv') + ops.count('FusedConv'),
                int8_nodes=sorted(re.sub(r'_token_\d+$', '', n.name) for n in nodes if n.op_type == 'QLinearConv'))
