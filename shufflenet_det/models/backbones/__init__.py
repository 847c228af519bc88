"""Backbones, each registered in ``mmdet.registry.MODELS`` on import."""
from .base import ShuffleBackboneBase
from .detnas import DetNAS
from .detnas_supernet import DetNASSupernet
from .esnet import ESNet
from .oneshot import OneShot
from .shufflenet_v1 import ShuffleNetV1
from .shufflenet_v2 import ShuffleNetV2
from .shufflenet_v2_large import ShuffleNetV2Large
from .shufflenet_v2_plus import ShuffleNetV2Plus

__all__ = ['ShuffleBackboneBase', 'ShuffleNetV1', 'ShuffleNetV2', 'DetNAS', 'DetNASSupernet', 'OneShot',
           'ShuffleNetV2Plus', 'ShuffleNetV2Large', 'ESNet']
