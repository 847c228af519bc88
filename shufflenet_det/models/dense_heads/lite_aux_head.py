"""The training-only auxiliary head of the lite detectors (NanoDet-Plus's "assign guidance module").

NanoDet-Plus (RangiLyu, 2021, github.com/RangiLyu/nanodet) trains its tiny head with targets assigned from the
predictions of a larger, temporary head: a GFL-style head (Li et al., arXiv 2006.04388) of ``stacked_convs`` 3x3
ConvModules with GroupNorm, shared by every level (a learnable scale per level on the box branch), reading the
concatenation of the main neck's features and those of a copy of the neck. Its predictions are detached before the
assignment (:meth:`shufflenet_det.models.dense_heads.LiteGFLHead.loss_by_feat`) and it is trained on the same
targets; it never runs at test time and is absent from exports (:class:`shufflenet_det.models.detectors.LiteDetector`
owns it and drops it on ``switch_to_deploy``).

Outputs per level ``(B, C + 4 (R + 1), H, W)``, the layout of :class:`~.lite_gfl_head.LiteGFLHead`.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from mmcv.cnn import ConvModule, Scale
from mmdet.registry import MODELS
from mmengine.model import BaseModule, bias_init_with_prob, normal_init
from torch import Tensor, nn


@MODELS.register_module()
class LiteAuxHead(BaseModule):
    """Shared-tower GFL head whose outputs guide the lite head's assignment (see module docstring).

    Args:
        num_classes: as the main head.
        in_channels: width of its input (twice the neck width: main and copied neck concatenated).
        feat_channels: width of the towers.
        stacked_convs: 3x3 ConvModules in each of the class and box towers.
        strides: the levels' strides (one scale per level).
        reg_max: as the main head.
        norm_cfg, act_cfg: mmcv configs of the towers (GroupNorm: batch-independent, as in NanoDet-Plus).
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 feat_channels: int = 192,
                 stacked_convs: int = 4,
                 strides: Sequence[int] = (8, 16, 32, 64),
                 reg_max: int = 7,
                 norm_cfg: dict = dict(type='GN', num_groups=32, requires_grad=True),
                 act_cfg: Optional[dict] = dict(type='LeakyReLU', negative_slope=0.1),
                 init_cfg: Optional[dict | list] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_classes < 1 or in_channels < 1 or feat_channels < 1 or stacked_convs < 1 or reg_max < 1:
            raise ValueError('LiteAuxHead needs num_classes, in_channels, feat_channels, stacked_convs, reg_max >= 1;'
                             f' got {num_classes}, {in_channels}, {feat_channels}, {stacked_convs}, {reg_max}')
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.strides = tuple(int(s) for s in strides)

        def tower() -> nn.Sequential:
            return nn.Sequential(*[ConvModule(in_channels if i == 0 else feat_channels, feat_channels, 3, padding=1,
                                              norm_cfg=norm_cfg, act_cfg=act_cfg) for i in range(stacked_convs)])

        self.cls_convs = tower()
        self.reg_convs = tower()
        self.gfl_cls = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        self.gfl_reg = nn.Conv2d(feat_channels, 4 * (reg_max + 1), 3, padding=1)
        self.scales = nn.ModuleList(Scale(1.0) for _ in self.strides)

    def init_weights(self) -> None:
        """Small normal init of every conv; class bias for a 0.01 prior."""
        super().init_weights()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                normal_init(m, std=0.01)
        assert self.gfl_cls.bias is not None  # nn.Conv2d's default bias=True
        nn.init.constant_(self.gfl_cls.bias, bias_init_with_prob(0.01))

    def forward(self, feats: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """Per level ``(B, C + 4 (reg_max + 1), H, W)``."""
        if len(feats) != len(self.strides):
            raise ValueError(f'LiteAuxHead has {len(self.strides)} levels, got {len(feats)} feature maps')
        return tuple(torch.cat([self.gfl_cls(self.cls_convs(x)), scale(self.gfl_reg(self.reg_convs(x)))], dim=1)
                     for x, scale in zip(feats, self.scales))
