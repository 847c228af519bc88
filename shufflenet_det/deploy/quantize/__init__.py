"""Static int8 post-training quantization of exported ONNX models (ONNX Runtime, QDQ), with its accuracy cost measured.

Affine 8-bit quantization with int32 accumulation (Jacob et al., "Quantization and Training of Neural Networks for
Efficient Integer-Arithmetic-Only Inference", CVPR 2018), per-channel symmetric weights and calibrated activation
ranges (Krishnamoorthi, "Quantizing deep convolutional networks for efficient inference: A whitepaper", 2018; Wu et
al., "Integer Quantization for Deep Learning Inference: Principles and Empirical Evaluation", 2020: MinMax, entropy
and percentile calibration, and partial quantization - the most sensitive layers kept in float).

:func:`quantize_onnx` takes any ONNX model of :mod:`..onnx_export` (a backbone, a detector with NMS in the graph, or
one that ends at the raw head tensors) and

1. runs ONNX Runtime's ``quant_pre_process`` (shape inference, basic graph optimisation);
2. calibrates on images prepared exactly as for the export (:func:`calibration_tensors`) and writes a QDQ model:
   int8 per-channel weights, uint8 activations by default, the chosen calibration method, the post-processing after
   the last convolutions in float, and the layers that must stay in float left out (named nodes, the final
   convolutions) with their outputs kept in float (:func:`keep_outputs_float`), so that ONNX Runtime cannot
   quantize them again at load time;
3. measures the error each convolution adds (:func:`sensitivity_report`: the int8 model's dequantized input and
   output of every convolution against the float model's, on calibration images) and, when asked, requantizes with
   the most sensitive ones kept in float (the calibration is computed once and reused);
4. scores the float and the int8 model on the validation set - COCO bbox mAP through
   :func:`..evaluate.evaluate_onnx` for detectors, the relative error of every output otherwise - and times both in
   the same rounds;
5. refuses (:class:`AccuracyGateError`, nothing written) when the mAP drop exceeds ``max_map_drop`` or an output
   error exceeds ``max_output_error``; otherwise writes the int8 model and its report ``<model>.onnx.json``
   atomically. Every intermediate file (pre-processed model, augmented calibration models, calibration cache) lives
   in a private temporary folder that is removed in every case.

Detectors without NMS in the graph are decoded by a function of :data:`RAW_DECODERS`
(:mod:`shufflenet_det.runtime.postprocess`'s anchor-head decoding for RetinaNet exports, its ``gfl_points`` decoding for
the lite detectors), chosen by the export report's ``postprocess.decoder`` (or by its anchor fields); other dense heads
register theirs with :func:`register_raw_decoder`. Measured speed and accuracy, and why int8 is no faster on x86 CPUs
without VNNI: docs/int8.md.

The modules, each importing only those above it:

* :mod:`.config` - :class:`QuantConfig`, the calibration methods and activation types, the errors;
* :mod:`.calibration` - calibration images drawn from a config's dataset and prepared as for the export, the
  validation set, the reader that feeds ONNX Runtime's calibration;
* :mod:`.graph` - the ONNX graph: convolutions and their kinds, post-processing nodes, what stays in float and why,
  the QDQ pairs removed to keep a layer float, the float-model check;
* :mod:`.ort_calls` - ONNX Runtime's ``quant_pre_process`` and ``quantize_static`` in a private scratch folder, and
  the convolutions ONNX Runtime really runs in int8;
* :mod:`.detection` - the model's kind from its export report, the raw-output decoders (:data:`RAW_DECODERS`);
* :mod:`.measure` - sensitivity report, output errors, COCO mAP of both models, latency timed in the same rounds;
* :mod:`.gate` - :func:`quantize_onnx` (the accuracy gate and the int8 model's report), :func:`quantize_unchecked`;
* :mod:`.tool` - the logic of ``tools/deploy/quantize.py`` (:func:`.tool.run` on its parsed arguments).

ncnn int8 (``tools/deploy/quantize.py --backend ncnn``, docs/deployment.md "ncnn int8"), written without ncnn's C++
tools: :mod:`shufflenet_det.runtime.ncnn_file` (the ``.param`` / ``.bin`` read and written byte for byte, torch-free),
:mod:`.ncnn_int8` (ncnn2table's scales and ncnn2int8's int8 layout), :mod:`.ncnn_gate`
(:func:`.ncnn_gate.quantize_ncnn`: the same gate and report), :mod:`.ncnn_tool` (the tool's ``--backend ncnn``).
"""
from __future__ import annotations

from .calibration import CALIBRATION_CHUNK, ValidationSet, calibration_tensors, dataset_split, sample_images
from .config import (
    ACTIVATION_TYPES,
    CALIBRATION_METHODS,
    AccuracyGateError,
    QuantConfig,
    QuantizationError,
    quantizable_op_types,
)
from .detection import RAW_DECODERS, DetectionsSession, model_kind, raw_decoder_name, register_raw_decoder
from .gate import quantize_onnx, quantize_unchecked
from .graph import (
    PASS_THROUGH,
    QUANTIZED_OPS,
    check_float_model,
    conv_nodes,
    keep_outputs_float,
    postprocess_nodes,
    resolve_exclusions,
)
from .measure import output_errors, sensitivity_report, time_models
from .ort_calls import preprocess_for_quantization, quantize_file, runtime_convs, scratch_dir

__all__ = [
    'ACTIVATION_TYPES', 'CALIBRATION_CHUNK', 'CALIBRATION_METHODS', 'PASS_THROUGH', 'QUANTIZED_OPS', 'RAW_DECODERS',
    'AccuracyGateError', 'DetectionsSession', 'QuantConfig', 'QuantizationError', 'ValidationSet',
    'calibration_tensors', 'check_float_model', 'conv_nodes', 'dataset_split', 'keep_outputs_float', 'model_kind',
    'output_errors', 'postprocess_nodes', 'preprocess_for_quantization', 'quantizable_op_types', 'quantize_file',
    'quantize_onnx', 'quantize_unchecked', 'raw_decoder_name', 'register_raw_decoder', 'resolve_exclusions',
    'runtime_convs', 'sample_images', 'scratch_dir', 'sensitivity_report', 'time_models',
]
