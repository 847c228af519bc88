"""DetNAS backbones (Chen et al., "DetNAS: Backbone Search for Object Detection", NeurIPS 2019, arXiv 1903.10979).

Six searched ShuffleNet-style backbones (names of :data:`~shufflenet_det.models.backbones.archs.DETNAS_ARCHS`,
e.g. ``'COCO-FPN-300M'``), or any encoding of the same search space passed as a dict::

    backbone=dict(type='DetNAS', arch=dict(stem_channels=16, stage_channels=[64, 160, 320, 640],
                                           last_channels=1024, repeats=[4, 4, 8, 4],
                                           choices=[2, 1, 2, 0, ...]))   # 20 choices, 0-3 or block names

Every unit has ``mid = out / 2``. The official stem and last conv carry a bias in front of their BN; here they do
not (the converter folds that bias into the BN running mean, which is exact). Weights of
megvii-model/ShuffleNet-Series ``DetNAS`` convert with ``tools/model_converters/convert_weights.py --src megvii
--type DetNAS --arch NAME``.
"""
from __future__ import annotations

from mmdet.registry import MODELS

from .archs.searched import parse_detnas_arch
from .searched_base import SearchedShuffleBackbone


@MODELS.register_module()
class DetNAS(SearchedShuffleBackbone):
    """DetNAS backbone.

    Args:
        arch: a published name (``'COCO-FPN-300M'``, the default, ``'COCO-FPN-1.3G'``, ``'COCO-FPN-3.8G'``,
            ``'COCO-RetinaNet-300M'``, ``'VOC-FPN-300M'``, ``'VOC-RetinaNet-300M'``) or a dict encoding (see module
            docstring).
        out_indices, act_cfg, **kwargs: see :class:`SearchedShuffleBackbone` (the published models use ReLU
            everywhere, which ``act_cfg=None`` keeps).
    """

    default_arch = 'COCO-FPN-300M'
    parse_arch = staticmethod(parse_detnas_arch)
