"""Models: backbones registered in ``mmdet.registry.MODELS`` and their building blocks."""
from . import backbones  # noqa: F401
