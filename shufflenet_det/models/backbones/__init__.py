"""Backbones, each registered in ``mmdet.registry.MODELS`` on import."""
from .base import ShuffleBackboneBase
from .shufflenet_v1 import ShuffleNetV1
from .shufflenet_v2 import ShuffleNetV2

__all__ = ['ShuffleBackboneBase', 'ShuffleNetV1', 'ShuffleNetV2']
