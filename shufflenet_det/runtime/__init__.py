"""The torch-free runtime: what runs an exported model on a board with numpy and ncnn (or onnxruntime) only.

Nothing here imports torch, mmcv, mmdet or another package of this project: the modules import each other
relatively and otherwise only the standard library and numpy (ncnn, onnxruntime, OpenCV and Pillow when a function
needs them). The folder copied alone to a board is a package: ``python -m runtime ncnn model.param --image x.ppm``
(docs/deployment.md).

* :mod:`.cli` - the runners' command lines (``python -m shufflenet_det.runtime {ncnn,onnx} ...``;
  ``tools/deploy/ncnn_runner.py`` and ``onnx_runner.py`` are the same commands);
* :mod:`.ncnn_model` / :mod:`.onnx_model` - an exported model with its report: :class:`~.ncnn_model.NcnnModel`,
  :class:`~.onnx_model.OnnxModel`;
* :mod:`.ncnn_param` - any ncnn ``.param`` / ``.bin`` pair without a report (its blobs read from the ``.param``:
  the benchmark's peer models) and the one place ncnn's options are set;
* :mod:`.images` - reading pictures (PPM / PGM / npy in numpy, OpenCV or Pillow for the rest), the test picture,
  mmdet's resize / normalise / pad, ``.npy`` input tensors;
* :mod:`.postprocess` - priors, box decoding and class-aware NMS in numpy, driven by the export's report;
* :mod:`.timing` - latency statistics, one callable timed alone, the benchmark's round-robin harness;
* :mod:`.io` - the project's one atomic file writer;
* :mod:`.errors` - the error policy of every command line (one ``error:`` line, exit status, signals).
"""
