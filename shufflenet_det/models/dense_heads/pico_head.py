"""PicoHead: the head of PP-PicoDet's legacy (2021.10) model zoo, parameter for parameter.

PP-PicoDet (Yu et al., arXiv 2111.00902; PaddleDetection release 2.6 ``ppdet/modeling/heads/pico_head.py``:
``PicoFeat`` + ``PicoHead``, an ``OTAVFLHead`` / ``GFLHead``). Per level a tower (``PicoFeat``) of ``stacked_convs``
depthwise 5x5 + pointwise 1x1 conv-norm pairs, the activation after each (Paddle's ``hard_swish``), then one 1x1 conv
(``share_cls_reg=True``, all legacy COCO configs) giving ``num_classes + 4 (reg_max + 1)`` channels: class logits
and, per box side, a distribution over distances ``0..reg_max`` strides (Generalized Focal Loss, arXiv 2006.04388).
With ``share_cls_reg=False`` a second tower and a second 1x1 conv give the distributions; :meth:`PicoHead.forward`
returns the merged per-level map either way.

Points are cell centres ``((col + cell_offset) * s, (row + cell_offset) * s)`` with ``cell_offset=0.5`` in the
legacy configs (mmdet's ``MlvlPointGenerator(offset=cell_offset)``, Paddle's ``get_single_level_center_point``).

Decoding (:meth:`PicoHead.predict_by_feat`) as Paddle's ``GFLHead.get_bboxes_single`` + ``MultiClassNMS``: per level
the ``nms_pre`` points of highest max class score (a top-k over points, not over (point, class) pairs as mmdet's
heads do), boxes = expected distance x stride around the point, clipped to the input; then per class the pairs
scoring > ``score_thr``, at most ``nms_top_k`` per class (highest first), boxes rescaled to the original image
(``rescale``; Paddle divides by the scale factor before its NMS too), the ``min_bbox_size`` filter (-1 = off: Paddle
has none), NMS per class at ``nms.iou_threshold``, the ``max_per_img`` (Paddle ``keep_top_k``) best. Paddle's NMS
computes areas without +1 (``normalized=True``), as mmcv's.

Training: Paddle's ``OTAVFLHead.get_loss`` with mmdet pieces: targets from mmdet's ``SimOTAAssigner`` on the
detached sigmoid scores and decoded boxes (centre radius 2.5, ``candidate_topk`` 10, ``iou_weight`` as configured);
mmdet's ``VarifocalLoss`` (IoU-weighted, target = IoU of the decoded box with its gt at the gt's class, averaged
over the positives), ``GIoULoss`` and ``DistributionFocalLoss`` (distance targets clipped to ``reg_max - 0.01``),
both weighted by the detached max class score and averaged over its sum, the DFL over the 4 sides. Where mmdet's
assigner differs from Paddle's ``SimOTAAssigner`` (``use_vfl=True``, its default, so the legacy configs): Paddle's
cost is ``VFL(score, IoU-weighted one-hot) * cls_weight + (1 - GIoU) * iou_weight`` (``batch_bbox_overlaps(...,
mode='giou')``); mmdet's is ``BCE(score, one-hot) * cls_weight - log(IoU) * iou_weight`` (Paddle's ``use_vfl=False``
branch). The candidate region (inside the gt box and within 2.5 strides of its centre) and the dynamic-k matching
(k = sum of the ``candidate_topk`` best IoUs, ties to the cheapest gt) are the same.

Paddle parameter -> module parameter (``head.`` -> ``bbox_head.``; ``s`` = level, ``i`` = conv of the tower;
Paddle BN ``_mean`` / ``_variance`` -> ``running_mean`` / ``running_var``, ``weight`` / ``bias`` unchanged)::

    conv_feat.cls_conv_dw{s}.{i}.conv.weight          conv_feat.cls_conv_dw.{s}.{i}.conv.weight   (depthwise 5x5)
    conv_feat.cls_conv_dw{s}.{i}.norm.{weight,bias,_mean,_variance}
                                                      conv_feat.cls_conv_dw.{s}.{i}.norm.{..., running_mean,
                                                      running_var}
    conv_feat.cls_conv_pw{s}.{i}.conv.weight / .norm.*  conv_feat.cls_conv_pw.{s}.{i}.conv.weight / .norm.*
    conv_feat.reg_conv_dw{s}.{i}.* / reg_conv_pw{s}.{i}.*  conv_feat.reg_conv_dw.{s}.{i}.* / ...  (share_cls_reg=False)
    head_cls{s}.weight, head_cls{s}.bias              head_cls.{s}.weight, head_cls.{s}.bias
    head_reg{s}.weight, head_reg{s}.bias              head_reg.{s}.weight, head_reg.{s}.bias     (share_cls_reg=False)

Paddle keys without a module parameter: ``head.distribution_project.project`` (the integral's fixed bins
``0..reg_max``; here mmdet's ``Integral`` buffer ``integral.project``) and ``head.p{3..7}_feat.scale_reg`` (the
per-level scales that the base ``GFLHead`` registers and ``PicoHead`` never applies).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmcv.ops import batched_nms
from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
from mmdet.models.dense_heads.gfl_head import Integral
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures.bbox import bbox2distance, bbox_overlaps, distance2bbox, get_box_tensor, scale_boxes
from mmdet.utils import reduce_mean
from mmengine.config import ConfigDict
from mmengine.model import bias_init_with_prob, normal_init
from mmengine.structures import InstanceData
from torch import Tensor, nn

from ..layers.fuse import fold_batchnorm
from .point_outputs import FlatPointOutputs


class ConvNorm(nn.Module):
    """Paddle's ``ConvNormLayer`` (bias-free conv ``conv``, norm ``norm``) followed by the tower's activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, groups: int, norm_cfg: dict,
                 act_cfg: Optional[dict]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, 1, (kernel_size - 1) // 2, groups=groups,
                              bias=False)
        self.norm = build_norm_layer(norm_cfg, out_channels)[1]
        self.act = build_activation_layer(act_cfg) if act_cfg is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(x)))


class PicoFeat(nn.Module):
    """Paddle's ``PicoFeat``: per level ``stacked_convs`` (depthwise, pointwise) pairs for classification (and, without
    ``share_cls_reg``, for regression)."""

    def __init__(self, channels: int, num_levels: int, stacked_convs: int, kernel_size: int, share_cls_reg: bool,
                 norm_cfg: dict, act_cfg: Optional[dict]) -> None:
        super().__init__()
        self.share_cls_reg = share_cls_reg

        def convs(k: int, groups: int) -> nn.ModuleList:
            return nn.ModuleList(nn.ModuleList(ConvNorm(channels, channels, k, groups, norm_cfg, act_cfg)
                                               for _ in range(stacked_convs)) for _ in range(num_levels))

        self.cls_conv_dw = convs(kernel_size, channels)
        self.cls_conv_pw = convs(1, 1)
        if not share_cls_reg:
            self.reg_conv_dw = convs(kernel_size, channels)
            self.reg_conv_pw = convs(1, 1)

    def forward(self, x: Tensor, level: int) -> tuple[Tensor, Tensor]:
        """``(cls_feat, reg_feat)`` of level ``level`` (``reg_feat`` is ``x`` with ``share_cls_reg``)."""
        cls_feat = reg_feat = x
        for dw, pw in zip(self.cls_conv_dw[level], self.cls_conv_pw[level]):  # type: ignore[call-overload]
            cls_feat = pw(dw(cls_feat))
        if not self.share_cls_reg:
            for dw, pw in zip(self.reg_conv_dw[level], self.reg_conv_pw[level]):  # type: ignore[call-overload]
                reg_feat = pw(dw(reg_feat))
        return cls_feat, reg_feat


@MODELS.register_module()
class PicoHead(FlatPointOutputs, BaseDenseHead):
    """PP-PicoDet's legacy head (see module docstring).

    Args:
        num_classes: object classes (sigmoid classifiers, no background).
        in_channels: width of the neck levels; the towers keep it (Paddle ``feat_in == feat_out == feat_in_chan``).
        stacked_convs: (depthwise, pointwise) pairs per tower (Paddle ``num_convs``: 2 for S, 4 for M / L).
        kernel_size: depthwise kernel (5).
        strides: strides of the neck levels (``fpn_stride``).
        reg_max: last bin of the distance distributions (7).
        share_cls_reg: one tower and one output conv for classes and boxes (True in the legacy configs).
        cell_offset: point offset inside its cell, in strides (0.5 in the legacy configs).
        prior_prob: initial class probability (the output bias; Paddle sets every channel of ``head_cls``'s bias).
        norm_cfg, act_cfg: the towers' norm and activation (``HSwish`` = Paddle ``hard_swish``).
        loss_cls, loss_dfl, loss_bbox: VarifocalLoss, DistributionFocalLoss, GIoULoss configs.
        train_cfg: ``assigner`` (SimOTAAssigner config).
        test_cfg: ``nms_pre`` (points per level), ``score_thr``, ``nms``, ``nms_top_k`` (per class), ``max_per_img``,
            ``min_bbox_size``.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 stacked_convs: int = 4,
                 kernel_size: int = 5,
                 strides: Sequence[int] = (8, 16, 32, 64),
                 reg_max: int = 7,
                 share_cls_reg: bool = True,
                 cell_offset: float = 0.5,
                 prior_prob: float = 0.01,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='HSwish'),
                 loss_cls: dict = dict(type='VarifocalLoss', use_sigmoid=True, iou_weighted=True, loss_weight=1.0),
                 loss_dfl: dict = dict(type='DistributionFocalLoss', loss_weight=0.25),
                 loss_bbox: dict = dict(type='GIoULoss', loss_weight=2.0),
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict | list] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_classes < 1 or in_channels < 1 or stacked_convs < 0 or reg_max < 1 or not strides:
            raise ValueError('PicoHead needs num_classes, in_channels, reg_max >= 1, stacked_convs >= 0 and strides; '
                             f'got {num_classes}, {in_channels}, {reg_max}, {stacked_convs}, {strides}')
        if not loss_cls.get('use_sigmoid', False):
            raise ValueError('PicoHead loss_cls must use sigmoid (VarifocalLoss with use_sigmoid=True)')
        self.num_classes = num_classes
        self.cls_out_channels = num_classes
        self.in_channels = in_channels
        self.stacked_convs = stacked_convs
        self.strides = tuple(int(s) for s in strides)
        self.reg_max = reg_max
        self.share_cls_reg = bool(share_cls_reg)
        self.cell_offset = float(cell_offset)
        self.prior_prob = float(prior_prob)
        self.out_channels_per_level = num_classes + 4 * (reg_max + 1)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        self.prior_generator = TASK_UTILS.build(dict(type='MlvlPointGenerator', strides=self.strides,
                                                     offset=self.cell_offset))
        self.integral = Integral(reg_max)
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_dfl = MODELS.build(loss_dfl)
        self.loss_bbox = MODELS.build(loss_bbox)
        self.assigner = TASK_UTILS.build(train_cfg['assigner']) if train_cfg and 'assigner' in train_cfg else None
        levels = len(self.strides)
        self.conv_feat = PicoFeat(in_channels, levels, stacked_convs, kernel_size, self.share_cls_reg, norm_cfg,
                                  act_cfg)
        cls_width = self.out_channels_per_level if self.share_cls_reg else num_classes
        self.head_cls = nn.ModuleList(nn.Conv2d(in_channels, cls_width, 1) for _ in range(levels))
        if not self.share_cls_reg:
            self.head_reg = nn.ModuleList(nn.Conv2d(in_channels, 4 * (reg_max + 1), 1) for _ in range(levels))
        self.deployed = False

    def switch_to_deploy(self) -> PicoHead:
        """Fold every BN of the towers into its conv (inference only)."""
        fold_batchnorm(self)
        self.eval()
        self.deployed = True
        return self

    def init_weights(self) -> None:
        """Paddle's initialisation: N(0, 0.01) convs (``ConvNormLayer``'s default), unit BNs, ``head_cls`` bias for
        ``prior_prob`` (every channel), ``head_reg`` bias 0."""
        super().init_weights()
        for m in self.conv_feat.modules():
            if isinstance(m, nn.Conv2d):
                normal_init(m, std=0.01)
        for conv in self.head_cls:
            normal_init(conv, std=0.01, bias=bias_init_with_prob(self.prior_prob))
        for conv in getattr(self, 'head_reg', []):
            normal_init(conv, std=0.01, bias=0.0)

    # ------------------------------------------------------------------ forward
    def forward(self, feats: Sequence[Tensor]) -> tuple[list[Tensor]]:
        """``(maps,)``: per level ``(B, C + 4 (reg_max + 1), H, W)``, class logits then distance logits."""
        if len(feats) != len(self.strides):
            raise ValueError(f'PicoHead has {len(self.strides)} levels (strides {self.strides}), got {len(feats)} '
                             'feature maps')
        maps = []
        for i, x in enumerate(feats):
            cls_feat, reg_feat = self.conv_feat(x, i)
            out = self.head_cls[i](cls_feat)
            if not self.share_cls_reg:
                out = torch.cat([out, self.head_reg[i](reg_feat)], dim=1)
            maps.append(out)
        return (maps,)

    def _decode(self, priors: Tensor, reg: Tensor, max_shape: Optional[Sequence[int]] = None) -> Tensor:
        """Corner boxes from distance logits ``(K, 4 (R + 1))`` at ``priors`` ``(K, 4)``."""
        dist = self.integral(reg.reshape(-1, 4 * (self.reg_max + 1))) * priors[:, 2:3]
        return distance2bbox(priors[:, :2], dist, max_shape)

    # ------------------------------------------------------------------ training
    def loss_by_feat(self, outputs: Sequence[Tensor], batch_gt_instances: list, batch_img_metas: list,
                     batch_gt_instances_ignore: Optional[list] = None) -> dict:
        """VFL + GIoU + DFL of the per-level maps (Paddle's ``OTAVFLHead.get_loss``, see module docstring)."""
        if self.assigner is None:
            raise ValueError('PicoHead needs train_cfg=dict(assigner=...) to compute losses')
        priors = self._flat_priors(outputs)
        cls, reg = self._split_flat(outputs)
        boxes = torch.stack([self._decode(priors, r) for r in reg])
        labels, box_targets, num_pos = [], [], 0
        for img_cls, img_boxes, gt in zip(cls.detach(), boxes.detach(), batch_gt_instances):
            lab, tgt = self._targets_single(img_cls, img_boxes, gt, priors)
            labels.append(lab)
            box_targets.append(tgt)
            num_pos += int((lab < self.num_classes).sum())
        label = torch.cat(labels)
        box_target = torch.cat(box_targets)
        flat_priors = priors.repeat(len(batch_gt_instances), 1)
        cls = cls.reshape(-1, self.num_classes)
        reg = reg.reshape(-1, 4 * (self.reg_max + 1))
        boxes = boxes.reshape(-1, 4)
        pos = torch.nonzero(label < self.num_classes, as_tuple=False).squeeze(1)
        vfl_target = cls.new_zeros(cls.shape)
        num_total = max(reduce_mean(cls.new_tensor(float(num_pos))).item(), 1.0)
        if pos.numel() > 0:
            pos_boxes, pos_targets = boxes[pos], box_target[pos]
            ious = bbox_overlaps(pos_boxes.detach(), pos_targets, is_aligned=True).clamp(min=0)
            vfl_target[pos, label[pos]] = ious
            weights = cls[pos].detach().sigmoid().max(dim=1)[0]
            weight_sum = max(reduce_mean(weights.sum()).item(), 1.0)
            stride = flat_priors[pos, 2:3]
            dist_target = (bbox2distance(flat_priors[pos, :2], pos_targets) / stride).clamp(0, self.reg_max - 0.01)
            loss_bbox = self.loss_bbox(pos_boxes, pos_targets, weight=weights, avg_factor=weight_sum)
            loss_dfl = self.loss_dfl(reg[pos].reshape(-1, self.reg_max + 1), dist_target.reshape(-1),
                                     weight=weights[:, None].expand(-1, 4).reshape(-1), avg_factor=4.0 * weight_sum)
        else:  # keep every parameter in the graph (distributed training)
            loss_bbox = reg.sum() * 0
            loss_dfl = reg.sum() * 0
        loss_cls = self.loss_cls(cls, vfl_target, avg_factor=num_total)
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox, loss_dfl=loss_dfl)

    @torch.no_grad()
    def _targets_single(self, cls: Tensor, boxes: Tensor, gt_instances: InstanceData, priors: Tensor
                        ) -> tuple[Tensor, Tensor]:
        """Labels (``num_classes`` = background) and box targets of one image from the SimOTA assignment."""
        num = priors.shape[0]
        labels = priors.new_full((num,), self.num_classes, dtype=torch.long)
        box_targets = priors.new_zeros(num, 4)
        gt_boxes = get_box_tensor(gt_instances.bboxes)
        if gt_boxes.numel() == 0:
            return labels, box_targets
        gt = InstanceData(bboxes=gt_boxes, labels=gt_instances.labels)
        assert self.assigner is not None  # loss_by_feat refuses a head without one
        result = self.assigner.assign(InstanceData(priors=priors, bboxes=boxes, scores=cls.sigmoid()), gt)
        pos = torch.nonzero(result.gt_inds > 0, as_tuple=False).squeeze(1)
        if pos.numel() > 0:
            matched = result.gt_inds[pos] - 1
            labels[pos] = gt_instances.labels[matched]
            box_targets[pos] = gt_boxes[matched]
        return labels, box_targets

    # ------------------------------------------------------------------ inference
    def predict_by_feat(self, outputs: Sequence[Tensor], batch_img_metas: list, cfg: Optional[ConfigDict] = None,
                        rescale: bool = False, with_nms: bool = True) -> list[InstanceData]:
        """Per image Paddle's decoding + ``MultiClassNMS`` (see module docstring); boxes rescaled to the original
        image with ``rescale``."""
        cfg = ConfigDict(self.test_cfg if cfg is None else cfg)
        sizes = [o.shape[-2:] for o in outputs]
        level_priors = self.prior_generator.grid_priors(sizes, dtype=outputs[0].dtype, device=outputs[0].device,
                                                        with_stride=True)
        nms_pre = int(cfg.get('nms_pre', -1))
        results = []
        for img_id, meta in enumerate(batch_img_metas):
            all_boxes, all_scores = [], []
            for out, priors in zip(outputs, level_priors):
                flat = out[img_id].flatten(1).t()
                cls, reg = flat.split([self.num_classes, 4 * (self.reg_max + 1)], dim=-1)
                scores = cls.sigmoid()
                if 0 < nms_pre < scores.shape[0]:
                    keep = scores.max(dim=1)[0].topk(nms_pre)[1]
                    scores, reg, priors = scores[keep], reg[keep], priors[keep]
                all_boxes.append(self._decode(priors, reg, max_shape=meta['img_shape']))
                all_scores.append(scores)
            results.append(self._select(torch.cat(all_boxes), torch.cat(all_scores), cfg, meta, rescale, with_nms))
        return results

    def _select(self, boxes: Tensor, scores: Tensor, cfg: ConfigDict, meta: dict, rescale: bool,
                with_nms: bool) -> InstanceData:
        """Paddle's ``MultiClassNMS`` on one image's candidates ``boxes`` (K, 4), ``scores`` (K, C)."""
        point_idx, labels = torch.nonzero(scores > cfg.get('score_thr', 0.0), as_tuple=True)
        boxes, scores = boxes[point_idx], scores[point_idx, labels]
        nms_top_k = int(cfg.get('nms_top_k', -1))
        if nms_top_k > 0 and labels.numel() > 0:  # the nms_top_k best of each class (stable, by score)
            order = torch.sort(-scores, stable=True)[1]
            order = order[torch.sort(labels[order], stable=True)[1]]
            sorted_labels = labels[order]
            first = torch.searchsorted(sorted_labels, sorted_labels, right=False)
            rank = torch.arange(order.numel(), device=order.device) - first
            keep = order[rank < nms_top_k]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        if rescale:  # Paddle divides by the scale factor before its NMS, mmdet's _bbox_post_process too
            boxes = scale_boxes(boxes, [1.0 / s for s in meta['scale_factor']])
        min_size = cfg.get('min_bbox_size', -1)
        if min_size >= 0:
            wh = boxes[:, 2:] - boxes[:, :2]
            valid = (wh > min_size).all(dim=1)
            boxes, scores, labels = boxes[valid], scores[valid], labels[valid]
        result = InstanceData()
        if with_nms and boxes.numel() > 0:
            dets, keep = batched_nms(boxes, scores, labels, cfg.nms)
            keep = keep[:cfg.get('max_per_img', 100)]
            result.bboxes, result.scores, result.labels = dets[:len(keep), :4], dets[:len(keep), 4], labels[keep]
        else:
            result.bboxes, result.scores, result.labels = boxes, scores, labels
        return result
