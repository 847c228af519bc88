"""The lite detectors' head: per-level depthwise-separable towers with one merged GFL output per level.

Generalized Focal Loss (Li et al., "Generalized Focal Loss: Learning Qualified and Distributed Bounding Boxes for
Dense Object Detection", NeurIPS 2020, arXiv 2006.04388) on anchor-free points, in the NanoDet-Plus design (RangiLyu,
2021, github.com/RangiLyu/nanodet): each level has its own tower of ``stacked_convs`` 5x5 depthwise-separable
ConvModules and one 1x1 conv whose ``num_classes + 4 * (reg_max + 1)`` channels hold the class logits and, per box
side, a discrete distribution of the distance to the point (in units of the level's stride). Training assigns
targets with mmdet's ``DynamicSoftLabelAssigner`` (RTMDet's SimOTA variant; NanoDet-Plus's assigner) and optimises
mmdet's QualityFocalLoss (IoU-aware classification), DistributionFocalLoss and GIoULoss on the decoded boxes,
weighted by the predicted quality.

With a training-only auxiliary head (:class:`~.lite_aux_head.LiteAuxHead`, driven by
:class:`~shufflenet_det.models.detectors.LiteDetector`), the targets are assigned from the auxiliary head's detached
predictions and both heads are trained on that one assignment (NanoDet-Plus's "assign guidance module").

Outputs per level ``(B, C + 4 (R + 1), H, W)`` (``C`` classes, ``R = reg_max``), priors are points at ``(x * s, y *
s)`` (``MlvlPointGenerator`` with offset 0). :meth:`LiteGFLHead.flatten_outputs` turns them into the deployment
tensor ``(B, N, C + 4 (R + 1))`` with sigmoid class scores (what the exports return).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from mmcv.cnn import DepthwiseSeparableConvModule
from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
from mmdet.models.dense_heads.gfl_head import Integral
from mmdet.models.utils import filter_scores_and_topk, multi_apply
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures.bbox import bbox2distance, distance2bbox, get_box_tensor
from mmdet.utils import reduce_mean
from mmengine.config import ConfigDict
from mmengine.model import bias_init_with_prob, normal_init
from mmengine.structures import InstanceData
from torch import Tensor, nn

from .point_outputs import FlatPointOutputs


@MODELS.register_module()
class LiteGFLHead(FlatPointOutputs, BaseDenseHead):
    """Per-level depthwise-separable GFL head (see module docstring).

    Args:
        num_classes: number of object classes (no background class: sigmoid classifiers).
        in_channels: width of every neck level.
        feat_channels: width of the towers.
        stacked_convs: depthwise-separable ConvModules per tower.
        kernel_size: their depthwise kernel.
        strides: the neck levels' strides (one tower per level).
        reg_max: the distance distribution's last bin (distances 0..reg_max strides; 7 in NanoDet-Plus).
        norm_cfg, act_cfg: mmcv configs of the towers.
        loss_cls: QualityFocalLoss config (``use_sigmoid=True``).
        loss_dfl: DistributionFocalLoss config.
        loss_bbox: a box loss on decoded corner boxes (GIoULoss).
        train_cfg: ``assigner`` (DynamicSoftLabelAssigner config).
        test_cfg: ``score_thr``, ``nms_pre`` (per level), ``nms``, ``max_per_img``, ``min_bbox_size``.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 feat_channels: int = 96,
                 stacked_convs: int = 2,
                 kernel_size: int = 5,
                 strides: Sequence[int] = (8, 16, 32, 64),
                 reg_max: int = 7,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='LeakyReLU', negative_slope=0.1),
                 loss_cls: dict = dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0, loss_weight=1.0),
                 loss_dfl: dict = dict(type='DistributionFocalLoss', loss_weight=0.25),
                 loss_bbox: dict = dict(type='GIoULoss', loss_weight=2.0),
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict | list] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_classes < 1 or in_channels < 1 or feat_channels < 1 or stacked_convs < 0 or reg_max < 1:
            raise ValueError('LiteGFLHead needs num_classes, in_channels, feat_channels, reg_max >= 1 and '
                             f'stacked_convs >= 0; got {num_classes}, {in_channels}, {feat_channels}, {reg_max}, '
                             f'{stacked_convs}')
        if not loss_cls.get('use_sigmoid', False):
            raise ValueError('LiteGFLHead loss_cls must use sigmoid (QualityFocalLoss with use_sigmoid=True)')
        self.num_classes = num_classes
        self.cls_out_channels = num_classes
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.stacked_convs = stacked_convs
        self.strides = tuple(int(s) for s in strides)
        self.reg_max = reg_max
        self.out_channels_per_level = num_classes + 4 * (reg_max + 1)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        self.prior_generator = TASK_UTILS.build(dict(type='MlvlPointGenerator', strides=self.strides, offset=0.0))
        self.integral = Integral(reg_max)
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_dfl = MODELS.build(loss_dfl)
        self.loss_bbox = MODELS.build(loss_bbox)
        self.assigner = TASK_UTILS.build(train_cfg['assigner']) if train_cfg and 'assigner' in train_cfg else None

        def tower() -> nn.Sequential:
            return nn.Sequential(*[
                DepthwiseSeparableConvModule(in_channels if i == 0 else feat_channels, feat_channels, kernel_size,
                                             padding=kernel_size // 2, norm_cfg=norm_cfg, act_cfg=act_cfg)
                for i in range(stacked_convs)])

        last = feat_channels if stacked_convs > 0 else in_channels
        self.cls_convs = nn.ModuleList(tower() for _ in self.strides)
        self.gfl_cls = nn.ModuleList(nn.Conv2d(last, self.out_channels_per_level, 1) for _ in self.strides)

    def init_weights(self) -> None:
        """Small normal init of the towers' convs (their BNs stay unit); class bias for a 0.01 prior."""
        super().init_weights()
        for m in self.cls_convs.modules():
            if isinstance(m, nn.Conv2d):
                normal_init(m, std=0.01)
        for conv in self.gfl_cls:
            assert isinstance(conv, nn.Conv2d) and conv.bias is not None
            normal_init(conv, std=0.01)
            nn.init.constant_(conv.bias[:self.num_classes], bias_init_with_prob(0.01))
            nn.init.constant_(conv.bias[self.num_classes:], 0.0)

    # ------------------------------------------------------------------ forward
    def forward(self, feats: Sequence[Tensor]) -> tuple[list[Tensor]]:
        """``(maps,)``: per level ``(B, C + 4 (reg_max + 1), H, W)``, class logits then distance distributions
        (logits); mmdet's ``tuple[list[Tensor]]`` convention of head outputs."""
        if len(feats) != len(self.strides):
            raise ValueError(f'LiteGFLHead has {len(self.strides)} levels (strides {self.strides}), got '
                             f'{len(feats)} feature maps')
        return ([self.gfl_cls[i](self.cls_convs[i](x)) for i, x in enumerate(feats)],)

    # ------------------------------------------------------------------ shared decoding
    def _decode(self, priors: Tensor, reg: Tensor, max_shape: Optional[Sequence[int]] = None) -> Tensor:
        """Corner boxes from distance distributions ``(..., 4 (R + 1))`` at ``priors`` ``(N, 4)``."""
        lead = reg.shape[:-1]
        dist = self.integral(reg.reshape(-1, 4 * (self.reg_max + 1))).reshape(*lead, 4)
        dist = dist * priors[:, 2:3] if dist.dim() == 2 else dist * priors[None, :, 2:3]
        points = priors[:, :2] if dist.dim() == 2 else priors[None, :, :2].expand(dist.shape[0], -1, -1)
        return distance2bbox(points, dist, max_shape)

    # ------------------------------------------------------------------ training
    def loss(self, x: Sequence[Tensor], batch_data_samples: list, aux_outputs: Optional[Sequence[Tensor]] = None
             ) -> dict:
        """Losses of this head on neck features ``x``; with ``aux_outputs`` (the auxiliary head's per-level maps)
        the assignment comes from them and the auxiliary head's losses are added with the prefix ``aux_``."""
        (outputs,) = self(x)
        gts, metas, ignores = [], [], []
        for sample in batch_data_samples:
            gts.append(sample.gt_instances)
            metas.append(sample.metainfo)
            ignores.append(getattr(sample, 'ignored_instances', None))
        return self.loss_by_feat(outputs, gts, metas, ignores, aux_outputs=aux_outputs)

    def loss_by_feat(self, outputs: Sequence[Tensor], batch_gt_instances: list, batch_img_metas: list,
                     batch_gt_instances_ignore: Optional[list] = None,
                     aux_outputs: Optional[Sequence[Tensor]] = None) -> dict:
        """QFL + DFL + GIoU of the per-level maps ``outputs`` (and of ``aux_outputs``, on the same assignment)."""
        if self.assigner is None:
            raise ValueError('LiteGFLHead needs train_cfg=dict(assigner=...) to compute losses')
        priors = self._flat_priors(outputs)
        cls, reg = self._split_flat(outputs)
        boxes = self._decode(priors, reg)
        guide_cls, guide_boxes = cls, boxes
        if aux_outputs is not None:
            aux_cls, aux_reg = self._split_flat(aux_outputs)
            aux_boxes = self._decode(priors, aux_reg)
            guide_cls, guide_boxes = aux_cls, aux_boxes
        targets = multi_apply(self._targets_single, guide_cls.detach(), guide_boxes.detach(), batch_gt_instances,
                              priors=priors)
        losses = self._loss_from_targets(cls, reg, boxes, targets)
        if aux_outputs is not None:
            aux = self._loss_from_targets(aux_cls, aux_reg, aux_boxes, targets)
            losses.update({f'aux_{k}': v for k, v in aux.items()})
        return losses

    @torch.no_grad()
    def _targets_single(self, cls: Tensor, boxes: Tensor, gt_instances: InstanceData, priors: Tensor
                        ) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
        """Labels (``num_classes`` = background), IoU scores, box targets, distance targets, positives of one image."""
        num = priors.shape[0]
        labels = priors.new_full((num,), self.num_classes, dtype=torch.long)
        scores = priors.new_zeros(num)
        box_targets = priors.new_zeros(num, 4)
        dist_targets = priors.new_zeros(num, 4)
        gt_boxes = get_box_tensor(gt_instances.bboxes)
        if gt_boxes.numel() == 0:
            return labels, scores, box_targets, dist_targets, 0
        gt = InstanceData(bboxes=gt_boxes, labels=gt_instances.labels)
        assert self.assigner is not None  # loss_by_feat refuses a head without one
        result = self.assigner.assign(InstanceData(priors=priors, bboxes=boxes, scores=cls), gt)
        pos = torch.nonzero(result.gt_inds > 0, as_tuple=False).squeeze(1)
        if pos.numel() > 0:
            matched = result.gt_inds[pos] - 1
            labels[pos] = gt_instances.labels[matched]
            scores[pos] = result.max_overlaps[pos].clamp(min=0)
            box_targets[pos] = gt_boxes[matched]
            dist_targets[pos] = bbox2distance(priors[pos, :2], gt_boxes[matched]) / priors[pos, 2:3]
            dist_targets[pos] = dist_targets[pos].clamp(min=0, max=self.reg_max - 0.01)
        return labels, scores, box_targets, dist_targets, int(pos.numel())

    def _loss_from_targets(self, cls: Tensor, reg: Tensor, boxes: Tensor, targets: tuple) -> dict:
        labels, scores, box_targets, dist_targets, num_pos = targets
        labels, scores = torch.cat(labels), torch.cat(scores)
        box_targets, dist_targets = torch.cat(box_targets), torch.cat(dist_targets)
        cls = cls.reshape(-1, self.num_classes)
        reg = reg.reshape(-1, 4 * (self.reg_max + 1))
        boxes = boxes.reshape(-1, 4)
        num_total = max(reduce_mean(cls.new_tensor(float(sum(num_pos)))).item(), 1.0)
        loss_cls = self.loss_cls(cls, (labels, scores), avg_factor=num_total)
        pos = torch.nonzero((labels >= 0) & (labels < self.num_classes), as_tuple=False).squeeze(1)
        if pos.numel() > 0:
            weights = cls[pos].detach().sigmoid().max(dim=1)[0]
            weight_sum = max(reduce_mean(weights.sum()).item(), 1.0)
            loss_bbox = self.loss_bbox(boxes[pos], box_targets[pos], weight=weights, avg_factor=weight_sum)
            loss_dfl = self.loss_dfl(reg[pos].reshape(-1, self.reg_max + 1), dist_targets[pos].reshape(-1),
                                     weight=weights[:, None].expand(-1, 4).reshape(-1), avg_factor=4.0 * weight_sum)
        else:  # keep every parameter in the graph (distributed training)
            loss_bbox = reg.sum() * 0
            loss_dfl = reg.sum() * 0
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox, loss_dfl=loss_dfl)

    # ------------------------------------------------------------------ inference
    def predict_by_feat(self, outputs: Sequence[Tensor], batch_img_metas: list, cfg: Optional[ConfigDict] = None,
                        rescale: bool = False, with_nms: bool = True) -> list[InstanceData]:
        """Per image: per level the ``nms_pre`` best (point, class) pairs above ``score_thr``, boxes decoded and
        clipped to the image, then mmdet's ``_bbox_post_process`` (rescale, ``min_bbox_size``, NMS, ``max_per_img``).
        """
        cfg = ConfigDict(self.test_cfg if cfg is None else cfg)
        sizes = [o.shape[-2:] for o in outputs]
        level_priors = self.prior_generator.grid_priors(sizes, dtype=outputs[0].dtype, device=outputs[0].device,
                                                        with_stride=True)
        results = []
        for img_id, meta in enumerate(batch_img_metas):
            all_boxes, all_scores, all_labels = [], [], []
            for out, priors in zip(outputs, level_priors):
                flat = out[img_id].flatten(1).t()
                cls, reg = flat.split([self.num_classes, 4 * (self.reg_max + 1)], dim=-1)
                nms_pre = cfg.get('nms_pre', -1)
                # nms_pre <= 0 keeps every pair (mmdet's filter_scores_and_topk would slice [:-1] with -1)
                scores, labels, _, kept = filter_scores_and_topk(cls.sigmoid(), cfg.get('score_thr', 0.0),
                                                                 nms_pre if nms_pre > 0 else cls.numel(),
                                                                 dict(reg=reg, priors=priors))
                all_boxes.append(self._decode(kept['priors'], kept['reg'], max_shape=meta['img_shape']))
                all_scores.append(scores)
                all_labels.append(labels)
            result = InstanceData(bboxes=torch.cat(all_boxes), scores=torch.cat(all_scores),
                                  labels=torch.cat(all_labels))
            results.append(self._bbox_post_process(result, cfg, rescale=rescale, with_nms=with_nms, img_meta=meta))
        return results

