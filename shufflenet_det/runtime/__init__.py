"""The torch-free runtime: what runs an exported model on a board with numpy and ncnn (or onnxruntime) only.

Nothing here imports torch, mmcv, mmdet or another package of this project; copying this folder to a board is
enough (docs/deployment.md).

* :mod:`.errors` - the error policy of every command line (one ``error:`` line, exit status, signals);
* :mod:`.postprocess` - priors, box decoding and class-aware NMS in numpy, driven by the export's report;
* :mod:`.timing` - latency statistics and the round-robin timing harness.
"""
