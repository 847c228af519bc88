"""Export wrapper for MMDetection single-stage anchor-based detectors (RetinaNet and relatives).

``DetectorExportWrapper(detector, with_nms=True)`` maps a normalised image batch ``(B, 3, H, W)`` to four tensors, the
layout of TensorRT's EfficientNMS plugin:

* ``num_dets`` (B,) int64 - how many rows of the next outputs are valid;
* ``boxes`` (B, D, 4) float - corner boxes in input-pixel coordinates;
* ``scores`` (B, D) float and ``labels`` (B, D) int64 (-1 and 0 on padding rows), ``D = max_per_img``.

It reproduces ``AnchorHead.predict_by_feat`` of mmdet 3.x for sigmoid classifiers with ``DeltaXYWHBBoxCoder``: per
level, the ``nms_pre`` best (anchor, class) pairs above ``score_thr`` are decoded and clipped to the image, boxes not
larger than ``min_bbox_size`` are dropped, then class-aware NMS (the class-offset trick of ``mmcv.ops.batched_nms``)
runs as ONNX ``NonMaxSuppression`` and the ``max_per_img`` best survivors are returned, sorted by score. Every
shape-dependent quantity (anchor grid, clip limits) is computed from tensor shapes, so the same graph serves static and
dynamic input sizes. Why not mmdeploy's rewriters here: this wrapper needs no patching of mmdet and no custom ops, and
is also runnable (and testable) eagerly; the mmdeploy path is provided separately (``tools/deploy/mmdeploy_deploy.py``).

``with_nms=False`` returns the raw head tensors instead - ``cls_score_<i>`` (B, A*C, H_i, W_i) logits for every level
then ``bbox_pred_<i>`` (B, A*4, H_i, W_i) deltas - for backends without NMS (ncnn): the post-processing then runs
outside the graph (``tools/deploy/ncnn_runner.py``), driven by :func:`postprocess_meta`.

The lite detectors (``LiteGFLHead``) have their own wrapper with the same outputs (:mod:`.lite`);
:func:`export_wrapper` picks the right one for a detector, and :func:`select_detections` (score filter, class-aware
ONNX NMS, the ``max_per_img`` best) is shared by both.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..utils.predict import preprocess_meta
from .nms import onnx_nms


def _head_of(detector: nn.Module) -> nn.Module:
    head = getattr(detector, 'bbox_head', None)
    if head is None or not hasattr(detector, 'extract_feat'):
        raise ValueError(f'{type(detector).__name__} is not an mmdet single-stage detector (needs extract_feat and '
                         'bbox_head)')
    return head


def check_supported(detector: nn.Module) -> None:
    """ValueError unless the detector's head is a sigmoid anchor head with a DeltaXYWH coder (RetinaNet-like)."""
    head = _head_of(detector)
    missing = [a for a in ('prior_generator', 'bbox_coder', 'cls_out_channels', 'num_base_priors')
               if not hasattr(head, a)]
    if missing:
        raise ValueError(f'{type(head).__name__} is not an anchor head (missing {missing}); supported: RetinaHead '
                         'and other AnchorHead subclasses')
    if not getattr(head, 'use_sigmoid_cls', False):
        raise ValueError(f'{type(head).__name__} uses a softmax classifier; only sigmoid classifiers are supported')
    coder = head.bbox_coder
    if type(coder).__name__ != 'DeltaXYWHBBoxCoder':
        raise ValueError(f'bbox coder {type(coder).__name__} is not supported (DeltaXYWHBBoxCoder only)')
    if getattr(coder, 'add_ctr_clamp', False):
        raise ValueError('DeltaXYWHBBoxCoder(add_ctr_clamp=True) is not supported')
    if float(getattr(head.prior_generator, 'center_offset', 0.0)) != 0.0:
        raise ValueError('anchor generators with center_offset != 0 are not supported')
    nms_cfg = head.test_cfg.get('nms', {}) if head.test_cfg is not None else {}
    if nms_cfg.get('type', 'nms') != 'nms':
        raise ValueError(f"test_cfg.nms.type={nms_cfg.get('type')!r} is not supported (only 'nms')")


def postprocess_meta(detector: nn.Module) -> dict[str, Any]:
    """Everything the numpy post-processing needs to reproduce the head's ``predict_by_feat`` (JSON-serialisable).

    Its ``preprocess`` part is :func:`shufflenet_det.utils.predict.preprocess_meta` of the detector (how raw images
    become the graph's input), so that a runner can prepare images without the config. Lite detectors
    (``LiteGFLHead``) get :func:`.lite.lite_postprocess_meta` (``decoder='gfl_points'``).
    """
    from .lite import is_lite, lite_postprocess_meta
    if is_lite(detector):
        return lite_postprocess_meta(detector)
    check_supported(detector)
    head = _head_of(detector)
    pg, coder, cfg = head.prior_generator, head.bbox_coder, head.test_cfg
    return dict(
        num_classes=int(head.num_classes),
        num_levels=int(pg.num_levels),
        strides=[[float(s[0]), float(s[1])] for s in pg.strides],
        base_anchors=[a.tolist() for a in pg.base_anchors],
        coder=dict(means=[float(v) for v in coder.means], stds=[float(v) for v in coder.stds],
                   wh_ratio_clip=float(getattr(coder, 'wh_ratio_clip', 16 / 1000)),
                   clip_border=bool(coder.clip_border)),
        test_cfg=dict(nms_pre=int(cfg.get('nms_pre', -1)), score_thr=float(cfg.get('score_thr', 0.0)),
                      iou_threshold=float(cfg['nms'].get('iou_threshold', 0.5)),
                      max_per_img=int(cfg.get('max_per_img', 100)),
                      min_bbox_size=float(cfg.get('min_bbox_size', -1))),
        preprocess=preprocess_meta(detector),
    )


def export_wrapper(detector: nn.Module, with_nms: bool = True) -> nn.Module:
    """The export wrapper of ``detector``: :class:`.lite.LiteExportWrapper` for lite detectors (``LiteGFLHead``),
    :class:`DetectorExportWrapper` for RetinaNet-like ones (ValueError for anything else)."""
    from .lite import LiteExportWrapper, is_lite
    if is_lite(detector):
        return LiteExportWrapper(detector, with_nms=with_nms)
    return DetectorExportWrapper(detector, with_nms=with_nms)


def head_output_scales(detector: nn.Module, x: torch.Tensor, raw: Any = None) -> list[tuple[float, float]]:
    """Per image of the batch ``x``, the magnitudes ``(S_cls, S_box)`` of the detector's raw class logits and box
    regression outputs (:func:`.parity.output_scale`): the scales its parity tolerances follow. ``raw``: the raw
    outputs of ``export_wrapper(detector, with_nms=False)`` on ``x`` when the caller has them already."""
    from .parity import output_scale
    wrapper = export_wrapper(detector, with_nms=False)
    num_classes = int(_head_of(detector).num_classes)
    if raw is None:
        with torch.no_grad():
            raw = wrapper(x)
    scales = []
    for i in range(int(x.shape[0])):
        cls, box = [], []
        for name, out in zip(wrapper.output_names, raw):
            out = out[i:i + 1]
            if name.startswith('cls_score'):
                cls.append(out)
            elif name.startswith('bbox_pred'):
                box.append(out)
            else:  # the lite detectors' one tensor: C class logits, then the box distributions
                cls.append(out[..., :num_classes])
                box.append(out[..., num_classes:])
        scales.append((output_scale(cls), output_scale(box)))
    return scales


def _arange_like(vec: torch.Tensor) -> torch.Tensor:
    """0, 1, ..., len(vec)-1 as float, built from tensor ops only (stays dynamic in a traced ONNX graph)."""
    return torch.ones_like(vec).cumsum(0) - 1


class DetectorExportWrapper(nn.Module):
    """See the module docstring. The wrapped detector is used as is (call ``switch_to_deploy`` on it beforehand)."""

    def __init__(self, detector: nn.Module, with_nms: bool = True) -> None:
        super().__init__()
        check_supported(detector)
        self.detector = detector
        self.with_nms = bool(with_nms)
        meta = postprocess_meta(detector)
        self.num_classes = meta['num_classes']
        self.strides = [tuple(s) for s in meta['strides']]
        for i, anchors in enumerate(_head_of(detector).prior_generator.base_anchors):
            self.register_buffer(f'base_anchors_{i}', anchors.detach().clone().float(), persistent=False)
        c = meta['coder']
        self.register_buffer('means', torch.tensor(c['means'], dtype=torch.float32), persistent=False)
        self.register_buffer('stds', torch.tensor(c['stds'], dtype=torch.float32), persistent=False)
        self.max_ratio = abs(math.log(c['wh_ratio_clip']))
        self.clip_border = c['clip_border']
        t = meta['test_cfg']
        self.nms_pre, self.score_thr, self.iou_thr = t['nms_pre'], t['score_thr'], t['iou_threshold']
        self.max_per_img, self.min_bbox_size = t['max_per_img'], t['min_bbox_size']

    @property
    def output_names(self) -> list[str]:
        """Names of the graph outputs, in order."""
        if self.with_nms:
            return ['num_dets', 'boxes', 'scores', 'labels']
        n = len(self.strides)
        return [f'cls_score_{i}' for i in range(n)] + [f'bbox_pred_{i}' for i in range(n)]

    # ------------------------------------------------------------------ pieces
    def _anchors(self, level: int, feat: torch.Tensor) -> torch.Tensor:
        sw, sh = self.strides[level]
        shift_x = _arange_like(feat[0, 0, 0, :]) * sw  # (W,)
        shift_y = _arange_like(feat[0, 0, :, 0]) * sh  # (H,)
        xx = shift_x[None, :] + torch.zeros_like(shift_y)[:, None]
        yy = shift_y[:, None] + torch.zeros_like(shift_x)[None, :]
        shifts = torch.stack([xx, yy, xx, yy], dim=-1).reshape(-1, 1, 4)
        base = getattr(self, f'base_anchors_{level}')
        return (shifts + base[None]).reshape(-1, 4)  # position-major, then anchor: mmdet's grid_priors order

    def _decode(self, anchors: torch.Tensor, deltas: torch.Tensor, img_hw: torch.Tensor) -> torch.Tensor:
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

    def _level_candidates(self, level: int, cls: torch.Tensor, reg: torch.Tensor,
                          img_hw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
            top_idx = _arange_like(flat[0]).long()[None].expand_as(flat)
        anchor_idx = torch.div(top_idx, nc, rounding_mode='floor')
        labels = top_idx - anchor_idx * nc
        sel_deltas = torch.gather(deltas, 1, anchor_idx.unsqueeze(-1).expand(-1, -1, 4))
        sel_anchors = anchors[anchor_idx]
        boxes = self._decode(sel_anchors, sel_deltas, img_hw)
        return boxes, top_scores, labels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Normalised images (B, 3, H, W) -> ``num_dets, boxes, scores, labels`` (or raw head tensors)."""
        feats = self.detector.extract_feat(x)
        cls_scores, bbox_preds = self.detector.bbox_head(feats)
        if not self.with_nms:
            return tuple(cls_scores) + tuple(bbox_preds)
        img_hw = torch._shape_as_tensor(x)[2:].to(x.dtype)
        parts = [self._level_candidates(i, c, r, img_hw)
                 for i, (c, r) in enumerate(zip(cls_scores, bbox_preds))]
        boxes = torch.cat([p[0] for p in parts], dim=1)
        scores = torch.cat([p[1] for p in parts], dim=1)
        labels = torch.cat([p[2] for p in parts], dim=1)
        return select_detections(boxes, scores, labels, score_thr=self.score_thr, iou_thr=self.iou_thr,
                                 max_per_img=self.max_per_img, min_bbox_size=self.min_bbox_size,
                                 bounded=self.nms_pre > 0)


def select_detections(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, *, score_thr: float,
                      iou_thr: float, max_per_img: int, min_bbox_size: float,
                      bounded: bool = True) -> tuple[torch.Tensor, ...]:
    """mmdet's ``_bbox_post_process`` in graph form: candidates -> ``num_dets, boxes, scores, labels``.

    ``boxes`` (B, K, 4), ``scores`` (B, K) and ``labels`` (B, K) are the decoded candidates of every level. Boxes not
    larger than ``min_bbox_size`` (when >= 0) get score 0, class-aware NMS runs as one ONNX ``NonMaxSuppression``
    (mmcv's class-offset trick; only scores above ``score_thr`` take part), and the ``max_per_img`` best survivors
    are returned sorted by score, padded (label -1, score 0). ``bounded``: K is a fixed number of candidates
    (``nms_pre`` per level), so at most K survive.
    """
    if min_bbox_size >= 0:
        wh = boxes[..., 2:] - boxes[..., :2]
        valid = (wh > min_bbox_size).all(dim=-1)
        scores = torch.where(valid, scores, torch.zeros_like(scores))
    # class-aware NMS through one NMS call: shift each class to its own region (mmcv.ops.batched_nms)
    max_coord = boxes.flatten(1).max(dim=1).values
    offsets = labels.to(boxes.dtype) * (max_coord[:, None] + 1)
    nms_boxes = boxes + offsets[..., None]
    num_cand = boxes.shape[1] if bounded else 1 << 20
    sel = onnx_nms(nms_boxes, scores.unsqueeze(1), num_cand, iou_thr, score_thr)
    ones = torch.ones_like(sel[:, 0], dtype=scores.dtype)
    kept = torch.zeros_like(scores).index_put((sel[:, 0], sel[:, 2]), ones)
    ranked = torch.where(kept > 0, scores, torch.full_like(scores, -1.0))
    top = min(max_per_img, boxes.shape[1]) if bounded else max_per_img
    out_scores, order = ranked.topk(top, dim=1)
    num_dets = kept.sum(dim=1).clamp(max=top).long()
    valid = out_scores >= 0
    out_boxes = torch.gather(boxes, 1, order.unsqueeze(-1).expand(-1, -1, 4))
    out_boxes = torch.where(valid.unsqueeze(-1), out_boxes, torch.zeros_like(out_boxes))
    out_labels = torch.where(valid, torch.gather(labels, 1, order), torch.full_like(order, -1))
    out_scores = torch.where(valid, out_scores, torch.zeros_like(out_scores))
    return num_dets, out_boxes, out_scores, out_labels
