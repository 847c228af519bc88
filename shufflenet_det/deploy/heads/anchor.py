"""The anchor form: mmdet's ``AnchorHead`` family (RetinaNet and relatives) with sigmoid classifiers.

:class:`AnchorExportWrapper` maps a normalised image batch ``(B, 3, H, W)`` to four tensors, the layout of TensorRT's
EfficientNMS plugin:

* ``num_dets`` (B,) int64 - how many rows of the next outputs are valid;
* ``boxes`` (B, D, 4) float - corner boxes in input-pixel coordinates;
* ``scores`` (B, D) float and ``labels`` (B, D) int64 (-1 and 0 on padding rows), ``D = max_per_img``.

It reproduces ``BaseDenseHead.predict_by_feat`` of mmdet 3.x (which ``AnchorHead`` and ``RetinaHead`` inherit) for
sigmoid classifiers with ``DeltaXYWHBBoxCoder``: per level, the ``nms_pre`` best (anchor, class) pairs above
``score_thr`` are decoded and clipped to the image, boxes not larger than ``min_bbox_size`` are dropped, then
class-aware NMS (the class-offset trick of ``mmcv.ops.batched_nms``) runs as ONNX ``NonMaxSuppression`` and the
``max_per_img`` best survivors are returned, sorted by score. Every shape-dependent quantity (anchor grid, clip
limits) is computed from tensor shapes, so the same graph serves static and dynamic input sizes. Why not mmdeploy's
rewriters here: this wrapper needs no patching of mmdet and no custom ops, and is also runnable (and testable)
eagerly; the mmdeploy path is provided separately (``tools/deploy/mmdeploy_deploy.py``).

``with_nms=False`` returns the raw head tensors instead - ``cls_score_<i>`` (B, A*C, H_i, W_i) logits for every level
then ``bbox_pred_<i>`` (B, A*4, H_i, W_i) deltas - for backends without NMS (ncnn): the post-processing then runs
outside the graph (``runtime.postprocess.postprocess``), driven by :meth:`AnchorForm.postprocess_meta`.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from mmdet.models.dense_heads import AnchorHead
from torch import Tensor, nn

from ..forms import ExportWrapper, HeadDeployForm, head_of, register_deploy_form
from ..nms import select_detections
from .common import arange_like, check_nms_type, test_cfg_meta


@register_deploy_form(AnchorHead)
class AnchorForm(HeadDeployForm):
    """Sigmoid anchor heads with ``DeltaXYWHBBoxCoder`` (RetinaHead and other ``AnchorHead`` subclasses that keep
    mmdet's ``predict_by_feat``)."""

    name = 'anchor'
    reproduces = ('predict_by_feat', '_predict_by_feat_single')

    def check(self, head: Any) -> None:
        """ValueError unless the head is a sigmoid anchor head with a plain DeltaXYWH coder and plain NMS."""
        missing = [a for a in ('prior_generator', 'bbox_coder', 'cls_out_channels', 'num_base_priors')
                   if not hasattr(head, a)]
        if missing:
            raise ValueError(f'{type(head).__name__} is not an anchor head (missing {missing}); supported: '
                             'RetinaHead and other AnchorHead subclasses')
        if not getattr(head, 'use_sigmoid_cls', False):
            raise ValueError(f'{type(head).__name__} uses a softmax classifier; only sigmoid classifiers are '
                             'supported')
        coder = head.bbox_coder
        if type(coder).__name__ != 'DeltaXYWHBBoxCoder':
            raise ValueError(f'bbox coder {type(coder).__name__} is not supported (DeltaXYWHBBoxCoder only)')
        if getattr(coder, 'add_ctr_clamp', False):
            raise ValueError('DeltaXYWHBBoxCoder(add_ctr_clamp=True) is not supported')
        if float(getattr(head.prior_generator, 'center_offset', 0.0)) != 0.0:
            raise ValueError('anchor generators with center_offset != 0 are not supported')
        check_nms_type(head.test_cfg)

    def postprocess_meta(self, head: Any) -> dict[str, Any]:
        """Anchors, coder and ``test_cfg``: what ``runtime.postprocess.postprocess`` reads (no ``decoder`` key)."""
        self.check(head)
        pg, coder = head.prior_generator, head.bbox_coder
        return dict(
            num_classes=int(head.num_classes),
            num_levels=int(pg.num_levels),
            strides=[[float(s[0]), float(s[1])] for s in pg.strides],
            base_anchors=[a.tolist() for a in pg.base_anchors],
            coder=dict(means=[float(v) for v in coder.means], stds=[float(v) for v in coder.stds],
                       wh_ratio_clip=float(getattr(coder, 'wh_ratio_clip', 16 / 1000)),
                       clip_border=bool(coder.clip_border)),
            test_cfg=test_cfg_meta(head.test_cfg),
        )

    def make_wrapper(self, detector: nn.Module, with_nms: bool) -> AnchorExportWrapper:
        return AnchorExportWrapper(detector, with_nms=with_nms)

    def split_raw(self, head: Any, raw: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Class logits of every level, then box deltas of every level."""
        n = len(raw) // 2
        return list(raw[:n]), list(raw[n:])


class AnchorExportWrapper(ExportWrapper):
    """See the module docstring. The wrapped detector is used as is (call ``switch_to_deploy`` on it beforehand)."""

    means: Tensor  # the coder's, buffers
    stds: Tensor

    def __init__(self, detector: nn.Module, with_nms: bool = True) -> None:
        super().__init__(detector, with_nms)
        head = head_of(detector)
        meta = AnchorForm().postprocess_meta(head)  # checks the head
        self.num_classes: int = meta['num_classes']
        self.strides = [(float(s[0]), float(s[1])) for s in meta['strides']]
        for i, anchors in enumerate(head.prior_generator.base_anchors):
            self.register_buffer(f'base_anchors_{i}', anchors.detach().clone().float(), persistent=False)
        c = meta['coder']
        self.register_buffer('means', torch.tensor(c['means'], dtype=torch.float32), persistent=False)
        self.register_buffer('stds', torch.tensor(c['stds'], dtype=torch.float32), persistent=False)
        self.max_ratio = abs(math.log(c['wh_ratio_clip']))
        self.clip_border: bool = c['clip_border']
        self.set_test_cfg(meta['test_cfg'])

    @property
    def raw_output_names(self) -> list[str]:
        """``cls_score_<i>`` of every level, then ``bbox_pred_<i>``."""
        n = len(self.strides)
        return [f'cls_score_{i}' for i in range(n)] + [f'bbox_pred_{i}' for i in range(n)]

    def _split(self, head_outputs: Sequence[Any]) -> tuple[list[Tensor], list[Tensor]]:
        if len(head_outputs) != 2:
            raise ValueError(f'{type(self.detector.bbox_head).__name__} returns {len(head_outputs)} lists of maps; '
                             'the anchor form decodes class scores and box deltas only (no score factors)')
        cls_scores, bbox_preds = head_outputs
        return list(cls_scores), list(bbox_preds)

    def raw_outputs(self, head_outputs: Sequence[Any]) -> tuple[Tensor, ...]:
        """The per-level class maps, then the box-delta maps."""
        cls_scores, bbox_preds = self._split(head_outputs)
        return tuple(cls_scores) + tuple(bbox_preds)

    # ------------------------------------------------------------------ pieces
    def _anchors(self, level: int, feat: Tensor) -> Tensor:
        sw, sh = self.strides[level]
        shift_x = arange_like(feat[0, 0, 0, :]) * sw  # (W,)
        shift_y = arange_like(feat[0, 0, :, 0]) * sh  # (H,)
        xx = shift_x[None, :] + torch.zeros_like(shift_y)[:, None]
        yy = shift_y[:, None] + torch.zeros_like(shift_x)[None, :]
        shifts = torch.stack([xx, yy, xx, yy], dim=-1).reshape(-1, 1, 4)
        base: Tensor = getattr(self, f'base_anchors_{level}')
        return (shifts + base[None]).reshape(-1, 4)  # position-major, then anchor: mmdet's grid_priors order

    def _decode(self, anchors: Tensor, deltas: Tensor, img_hw: Tensor) -> Tensor:
        deltas = deltas * self.stds + self.means
        pxy = (anchors[..., :2] + anchors[..., 2:]) * 0.5
        pwh = anchors[..., 2:] - anchors[..., :2]
        gxy = pxy + pwh * deltas[..., :2]
        gwh = pwh * deltas[..., 2:].clamp(min=-self.max_ratio, max=self.max_ratio).exp()
        boxes = torch.cat([gxy - gwh * 0.5, gxy + gwh * 0.5], dim=-1)
        if self.clip_border:
            limit = torch.stack([img_hw[1], img_hw[0], img_hw[1], img_hw[0]])
            boxes = torch.minimum(boxes.clamp(min=0), limit)
        return boxes

    def _level_candidates(self, level: int, cls: Tensor, reg: Tensor,
                          img_hw: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b = cls.shape[0]
        nc = self.num_classes
        scores = cls.permute(0, 2, 3, 1).reshape(b, -1, nc).sigmoid()
        deltas = reg.permute(0, 2, 3, 1).reshape(b, -1, 4)
        anchors = self._anchors(level, cls)
        flat = scores.reshape(b, -1)
        if self.nms_pre > 0:
            # pad so that top-k is defined even when a level has fewer than nms_pre (anchor, class) pairs; padded
            # entries score 0 and sit on zero-size anchors, so the score threshold / size filter drop them
            k = self.nms_pre
            flat = torch.cat([flat, flat.new_zeros((b, k))], dim=1)
            deltas = torch.cat([deltas, deltas.new_zeros((b, k, 4))], dim=1)
            anchors = torch.cat([anchors, anchors.new_zeros((k, 4))], dim=0)
            top_scores, top_idx = flat.topk(k, dim=1)
        else:
            top_scores = flat
            top_idx = arange_like(flat[0]).long()[None].expand_as(flat)
        anchor_idx = torch.div(top_idx, nc, rounding_mode='floor')
        labels = top_idx - anchor_idx * nc
        sel_deltas = torch.gather(deltas, 1, anchor_idx.unsqueeze(-1).expand(-1, -1, 4))
        sel_anchors = anchors[anchor_idx]
        boxes = self._decode(sel_anchors, sel_deltas, img_hw)
        return boxes, top_scores, labels

    def detections(self, head_outputs: Sequence[Any], img_hw: Tensor) -> tuple[Tensor, ...]:
        """Per level the ``nms_pre`` best candidates, decoded; then :func:`..nms.select_detections`."""
        cls_scores, bbox_preds = self._split(head_outputs)
        hw = img_hw.to(cls_scores[0].dtype)
        parts = [self._level_candidates(i, c, r, hw) for i, (c, r) in enumerate(zip(cls_scores, bbox_preds))]
        boxes = torch.cat([p[0] for p in parts], dim=1)
        scores = torch.cat([p[1] for p in parts], dim=1)
        labels = torch.cat([p[2] for p in parts], dim=1)
        return select_detections(boxes, scores, labels, score_thr=self.score_thr, iou_thr=self.iou_thr,
                                 max_per_img=self.max_per_img, min_bbox_size=self.min_bbox_size,
                                 bounded=self.nms_pre > 0)
