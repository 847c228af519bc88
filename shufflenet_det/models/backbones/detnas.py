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

from typing import Mapping, Optional, Sequence

from mmdet.registry import MODELS

from .archs.searched import parse_detnas_arch
from .searched_base import SearchedShuffleBackbone


@MODELS.register_module()
class DetNAS(SearchedShuffleBackbone):
    """DetNAS backbone.

    Args:
        arch: a published name (``'COCO-FPN-300M'``, ``'COCO-FPN-1.3G'``, ``'COCO-FPN-3.8G'``,
            ``'COCO-RetinaNet-300M'``, ``'VOC-FPN-300M'``, ``'VOC-RetinaNet-300M'``) or a dict encoding (see module
            docstring).
        out_indices: outputs to return: 0-3 the four stages (strides 4, 8, 16, 32), 4 the last 1x1 conv.
        frozen_stages: -1 freezes nothing; k freezes output groups 0..k (group 0 = stem + stage 1).
        conv_cfg, norm_cfg: layer configs of every conv / norm.
        act_cfg: activation used everywhere (ReLU in the published models).
        norm_eval, with_cp, init_cfg: see :class:`~shufflenet_det.models.backbones.base.ShuffleBackboneBase`.
    """

    def __init__(self,
                 arch: str | Mapping = 'COCO-FPN-300M',
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='ReLU'),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[dict | list] = None) -> None:
        spec = parse_detnas_arch(arch)
        super().__init__(spec, out_indices=out_indices, frozen_stages=frozen_stages, conv_cfg=conv_cfg,
                         norm_cfg=norm_cfg, act_cfg=act_cfg, stem_act_cfg=act_cfg,
                         stage_act_cfgs=[act_cfg] * len(spec.repeats), last_act_cfg=act_cfg, norm_eval=norm_eval,
                         with_cp=with_cp, init_cfg=init_cfg)
