"""shufflenet_det: the ShuffleNet family for MMDetection 3.x.

``import shufflenet_det`` (or ``custom_imports=dict(imports=['shufflenet_det'])`` in an mmdet config) applies the
torch 2.13 compatibility fixes of :mod:`shufflenet_det.compat`, registers the backbones in
``mmdet.registry.MODELS`` and the crash-safe checkpoint hook in ``mmdet.registry.HOOKS``.
"""
from .version import __version__
from . import compat

compat.apply()

from . import models  # noqa: E402,F401  (registers the backbones)
from . import engine  # noqa: E402,F401  (registers AtomicCheckpointHook and the atomic file backend)

__all__ = ['__version__', 'compat', 'engine', 'models']
