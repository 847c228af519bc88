"""Deployment of shufflenet_det models: ONNX (ONNX Runtime, TensorRT), ncnn (ARM) and mmdeploy.

* :mod:`.exporter` - the export skeleton, written once: build -> fold -> export -> check -> report -> atomic write;
* :mod:`.onnx_export` - its ONNX backend: backbone / detector export with a parity check against PyTorch;
* :mod:`.ncnn_export` - its ncnn backend: pnnx conversion to ``.param``/``.bin`` with an fp16-tolerance check;
* :mod:`.export_common` - the skeleton's pieces (errors, input checks, tuple outputs, report fields);
* :mod:`.forms` - deploy forms of detection heads (export wrapper, NMS graph, post-processing meta, parity scales),
  registered per head class and looked up along the head's MRO; the built-in forms in :mod:`.heads` (``anchor``:
  mmdet's ``AnchorHead`` family; ``gfl``: ``LiteGFLHead``); :mod:`.detector` - a detector's pieces from its form;
* :mod:`.nms` - ONNX ``NonMaxSuppression`` and mmdet's final selection, in graph form;
* :mod:`.mmdeploy_lite`, :mod:`.mmdeploy_pico` - mmdeploy's rewriters of ``LiteGFLHead`` and ``PicoHead``'s
  ``predict_by_feat`` (import mmdeploy; their shared NMS stage: :mod:`.mmdeploy_common`);
* :mod:`shufflenet_det.runtime.postprocess` - torch-free decode + NMS for backends without NMS (the ncnn runner);
* :mod:`.graph_opt` - ONNX rewrites of the channel shuffles (concat + shuffle -> one interleave; the Megvii
  layout's de-interleave + halves -> two strided slices);
* :mod:`.channel_pad` - tensors between convolutions zero-padded to ONNX Runtime's NCHWc channel block;
  :mod:`.ncnn_pad` - the same on the ncnn files, to the channel multiples ncnn packs by;
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
