"""Deployment of shufflenet_det models: ONNX (ONNX Runtime, TensorRT), ncnn (ARM) and mmdeploy.

* :mod:`.onnx_export` - backbone / detector export with a parity check against PyTorch;
* :mod:`.detector` - the export wrapper of RetinaNet-like detectors (decode + ONNX NonMaxSuppression in the graph);
* :mod:`.ncnn_export` - pnnx-based conversion to ncnn ``.param``/``.bin`` with an fp16-tolerance parity check;
* :mod:`.numpy_postprocess` - torch-free decode + NMS for backends without NMS (the ncnn runner);
* :mod:`.graph_opt` - ONNX rewrites for ShuffleNet (concat + channel shuffle -> one interleave);
* :mod:`.channel_pad` - conv -> depthwise -> conv chains zero-padded to a width multiple of 4 (ONNX Runtime NCHWc);
* :mod:`.compat_mmdeploy` - fixes that let mmdeploy 1.3.1 run on torch 2.13;
* :mod:`.bench` - the latency benchmark behind ``tools/analysis_tools/benchmark.py``;
* :mod:`.loading`, :mod:`.cli` - models, weights and check images for the tools;
* :mod:`.atomic`, :mod:`.parity` - all-or-nothing writing and the comparison helpers.

See configs/deploy/README.md for the commands.
"""
from .atomic import atomic_outputs, write_json_atomic
from .parity import compare_detections, compare_tensors, format_report

__all__ = ['atomic_outputs', 'write_json_atomic', 'compare_detections', 'compare_tensors', 'format_report']
