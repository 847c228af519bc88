"""shufflenet_det: the ShuffleNet family for MMDetection 3.x.

``import shufflenet_det`` (or ``custom_imports=dict(imports=['shufflenet_det'])`` in an mmdet config) applies the
compatibility fixes of :mod:`shufflenet_det.compat` (each only where its problem exists), registers the backbones,
necks, heads and detectors in mmdet's ``MODELS`` and the crash-safe checkpoint hook in ``HOOKS``, adds the
``shufflenet_det`` config scope (:mod:`shufflenet_det.registry`) and the ``shufflenet_det://`` checkpoint prefix
(published weights by name: :mod:`shufflenet_det.weights`). When mmdeploy is imported already (mmdeploy's own
``tools/deploy.py`` imports it before the model config's ``custom_imports``), the mmdeploy rewriters of the lite and
PicoDet heads are registered too.

On a board without torch only :mod:`shufflenet_det.runtime` is usable: when torch is not installed the package
registers nothing, and the torch-free runtime imports as usual.
"""
import importlib.util
import sys

from .version import __version__

if importlib.util.find_spec('torch') is None:  # a board: the torch-free runtime only
    __all__ = ['__version__']
else:
    from . import compat

    compat.apply()

    # Registration runs after the fixes above (the imports below build mmdet's registries).
    from . import engine, models, registry, weights  # noqa: E402,F401,I001

    weights.register_scheme()
    if 'mmdeploy' in sys.modules:
        from .deploy import compat_mmdeploy
        compat_mmdeploy.register_head_rewriters()

    __all__ = ['__version__', 'compat', 'engine', 'models', 'registry', 'weights']
