"""shufflenet_det: the ShuffleNet family for MMDetection 3.x.

``import shufflenet_det`` (or ``custom_imports=dict(imports=['shufflenet_det'])`` in an mmdet config) applies the
compatibility fixes of :mod:`shufflenet_det.compat` (each only where its problem exists), registers the backbones in
``mmdet.registry.MODELS`` and the crash-safe checkpoint hook in ``mmdet.registry.HOOKS``, and adds the
``shufflenet_det`` config scope (:mod:`shufflenet_det.registry`), and registers the ``shufflenet_det://`` checkpoint
prefix (published weights by name: :mod:`shufflenet_det.weights`).
"""
from . import compat
from .version import __version__

compat.apply()

# Registration runs after the fixes above (the imports below build mmdet's registries).
from . import engine, models, registry, weights  # noqa: E402,F401,I001

weights.register_scheme()

__all__ = ['__version__', 'compat', 'engine', 'models', 'registry', 'weights']
