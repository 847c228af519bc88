"""LiteDetector: a single-stage detector with a training-only auxiliary neck + head (NanoDet-Plus's training scheme).

NanoDet-Plus (RangiLyu, 2021, github.com/RangiLyu/nanodet) makes a phone-sized detector learn like a larger one:
during training a copy of the neck and a bigger GFL head (:class:`~shufflenet_det.models.dense_heads.LiteAuxHead`)
read the backbone features; the auxiliary head's detached predictions drive the label assignment of the small head
(:meth:`~shufflenet_det.models.dense_heads.LiteGFLHead.loss_by_feat`) and both are trained on it. From
``detach_epoch`` on, the auxiliary branch reads detached features, so its losses no longer reach the backbone and the
main neck. The epoch comes from mmdet's ``SetEpochInfoHook`` (put it in ``custom_hooks``).

At test time the auxiliary modules never run (``predict`` and ``_forward`` are those of mmdet's
``SingleStageDetector``); :meth:`LiteDetector.switch_to_deploy` deletes them and folds every BatchNorm, so exports,
FLOPs and parameter counts see only the deployed network (:attr:`LiteDetector.training_only_modules`).
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
from mmcv.cnn import fuse_conv_bn
from mmdet.models.detectors.single_stage import SingleStageDetector
from mmdet.registry import MODELS
from torch import Tensor


@MODELS.register_module()
class LiteDetector(SingleStageDetector):
    """Single-stage detector + training-only auxiliary assignment branch (see module docstring).

    Args:
        backbone, neck, bbox_head, train_cfg, test_cfg, data_preprocessor, init_cfg: as mmdet's
            ``SingleStageDetector`` (``bbox_head``: a :class:`~shufflenet_det.models.dense_heads.LiteGFLHead`).
        aux_head: config of the auxiliary head (``LiteAuxHead``; its ``in_channels`` is twice the neck width), or
            ``None`` to train without it. The auxiliary neck is a second instance of ``neck``'s config.
        detach_epoch: epoch from which the auxiliary branch reads detached features (10 in NanoDet-Plus).
    """

    #: Child modules that exist only for training (absent after :meth:`switch_to_deploy`).
    TRAINING_ONLY = ('aux_neck', 'aux_head')

    def __init__(self, backbone: dict, neck: dict, bbox_head: dict, aux_head: Optional[dict] = None,
                 detach_epoch: int = 10, train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict | list] = None) -> None:
        super().__init__(backbone=backbone, neck=neck, bbox_head=bbox_head, train_cfg=train_cfg, test_cfg=test_cfg,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if detach_epoch < 0:
            raise ValueError(f'LiteDetector detach_epoch must be >= 0, got {detach_epoch}')
        self.detach_epoch = int(detach_epoch)
        self.epoch = 0
        if aux_head is not None:
            self.aux_neck = MODELS.build(copy.deepcopy(neck))
            self.aux_head = MODELS.build(aux_head)
        self.deployed = False

    @property
    def training_only_modules(self) -> tuple[str, ...]:
        """Names of the present child modules that only training uses."""
        return tuple(name for name in self.TRAINING_ONLY if hasattr(self, name))

    def set_epoch(self, epoch: int) -> None:
        """Called by mmdet's ``SetEpochInfoHook`` before every training epoch."""
        self.epoch = int(epoch)

    def loss(self, batch_inputs: Tensor, batch_data_samples: list) -> dict:
        """Main head losses, plus the auxiliary head's (prefixed ``aux_``) on the assignment it guides."""
        feats = self.backbone(batch_inputs)
        neck_feats = self.neck(feats)
        aux_outputs = None
        if hasattr(self, 'aux_head'):
            detach = self.epoch >= self.detach_epoch
            aux_in = [f.detach() for f in feats] if detach else feats
            main = [f.detach() for f in neck_feats] if detach else neck_feats
            aux_feats = self.aux_neck(aux_in)
            aux_outputs = self.aux_head([torch.cat([m, a], dim=1) for m, a in zip(main, aux_feats)])
        return self.bbox_head.loss(neck_feats, batch_data_samples, aux_outputs=aux_outputs)

    def switch_to_deploy(self) -> LiteDetector:
        """Delete the training-only modules and fold every BatchNorm into its conv (inference only)."""
        for name in self.training_only_modules:
            delattr(self, name)
        if hasattr(self.backbone, 'switch_to_deploy'):
            self.backbone.switch_to_deploy()
        fuse_conv_bn(self)
        self.eval()
        self.deployed = True
        return self
