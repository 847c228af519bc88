"""Latency / throughput benchmark of backbones and detectors across deployment paths, in one process.

* :mod:`.timing` - the rows (:class:`Row`) and the round-robin timing harness (:func:`time_in_rounds`);
* :mod:`.backends` - one builder per backend name (:data:`BACKENDS`: PyTorch eager / channels_last / jit / compile,
  ONNX Runtime plain and deploy, ncnn, CUDA) and the peer models of torchvision and mmpretrain;
* :mod:`.report` - ratios, summary, table, plot and environment;
* :mod:`.peer_files` - peer mode: another project's export of the same network, given as an ONNX file or an ncnn
  pair, checked and timed next to this project's export (``ort-peer`` / ``ncnn-peer`` rows, :func:`peer_ratios`);
* :mod:`.driver` - :func:`run_benchmark`, the whole run.

``tools/analysis_tools/benchmark.py`` is the command line. The ncnn rows are timed by the torch-free runtime's
ncnn runner (:mod:`shufflenet_det.runtime.cli`) in a child process.
"""
from ..runtime.timing import Row, time_in_rounds
from .backends import (
                       ALL_BACKENDS,
                       BACKENDS,
                       CPU_BACKENDS,
                       DEFAULT_BACKENDS,
                       GPU_BACKENDS,
                       OPTIONAL_BACKENDS,
                       Unavailable,
                       peer_models,
)
from .driver import run_benchmark
from .peer_files import PEER_BACKENDS, PeerFile, check_peer_ncnn, check_peer_onnx, check_peer_shape, compared_backend
from .report import (
                     backbone_ratios,
                     environment,
                     format_peer_ratio,
                     format_summary,
                     format_table,
                     peer_ratios,
                     plot,
                     summarize,
)

__all__ = ['ALL_BACKENDS', 'BACKENDS', 'CPU_BACKENDS', 'DEFAULT_BACKENDS', 'GPU_BACKENDS', 'OPTIONAL_BACKENDS',
           'Unavailable', 'peer_models', 'run_benchmark', 'backbone_ratios', 'environment', 'format_summary',
           'format_table', 'plot', 'summarize', 'Row', 'time_in_rounds', 'PEER_BACKENDS', 'PeerFile',
           'check_peer_ncnn', 'check_peer_onnx', 'check_peer_shape', 'compared_backend', 'format_peer_ratio',
           'peer_ratios']
