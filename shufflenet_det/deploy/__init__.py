"""Deployment of shufflenet_det models: ONNX (ONNX Runtime, TensorRT), ncnn (ARM) and mmdeploy.

* :mod:`.onnx_export` - backbone / detector export with a parity check against PyTorch;
* :mod:`.detector` - the export wrapper of RetinaNet-like detectors (decode + ONNX NonMaxSuppression in the graph);
* :mod:`.lite` - the export wrapper of the lite detectors (``LiteGFLHead``: raw tensor, or NMS in the graph);
* :mod:`.mmdeploy_lite` - mmdeploy's rewriter of ``LiteGFLHead.predict_by_feat`` (imports mmdeploy);
* :mod:`.ncnn_export` - pnnx-based conversion to ncnn ``.param``/``.bin`` with an fp16-tolerance parity check;
* :mod:`.export_common` - what both exporters share (errors, input checks, tuple outputs, report fields);
* :mod:`shufflenet_det.runtime.postprocess` - torch-free decode + NMS for backends without NMS (the ncnn runner);
* :mod:`.graph_opt` - ONNX rewrites for ShuffleNet (concat + channel shuffle -> one interleave);
* :mod:`.channel_pad` - conv -> depthwise -> conv chains zero-padded to a width multiple of 4 (ONNX Runtime NCHWc);
* :mod:`.compat_mmdeploy` - fixes that let mmdeploy 1.3.1 run on torch 2.13;
* :mod:`.evaluate` - COCO mAP of an exported detector next to PyTorch's;
* :mod:`.quantize` - static int8 quantization (ONNX Runtime, QDQ) with a sensitivity report and an mAP gate;
* :mod:`.images`, :mod:`.cli` - check images and the argument handling of the export tools;
* :mod:`.parity` - the comparison helpers.

Models, configs and checkpoints come from :mod:`shufflenet_det.utils` (``build_detector``, ``build_backbone``,
``prepare_for_export``), every file is written through :mod:`shufflenet_det.utils.io`; the latency benchmark is
:mod:`shufflenet_det.benchmark`. See docs/deployment.md for the commands.
"""
# numpy only here: `import shufflenet_det` imports this package (compat_mmdeploy) and must stay light
from .parity import compare_detections, compare_tensors, format_report

__all__ = ['compare_detections', 'compare_tensors', 'format_report']
