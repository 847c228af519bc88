"""Latency / throughput benchmark of backbones and detectors across deployment paths, in one process.

* :mod:`.timing` - the rows (:class:`Row`) and the round-robin timing harness (:func:`time_in_rounds`);
* :mod:`.backends` - one builder per backend name (:data:`BACKENDS`: PyTorch eager / channels_last / jit / compile,
  ONNX Runtime plain and deploy, ncnn, CUDA) and the peer models of torchvision and mmpretrain;
* :mod:`.report` - ratios, summary, table, plot and environment;
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
from .report import backbone_ratios, environment, format_summary, format_table, plot, summarize

__all__ = ['ALL_BACKENDS', 'BACKENDS', 'CPU_BACKENDS', 'DEFAULT_BACKENDS', 'GPU_BACKENDS', 'OPTIONAL_BACKENDS',
           'Unavailable', 'peer_models', 'run_benchmark', 'backbone_ratios', 'environment', 'format_summary',
           'format_table', 'plot', 'summarize', 'Row', 'time_in_rounds']
