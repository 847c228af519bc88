"""NanoDet-Plus (RangiLyu/nanodet ``nanodet/model``), re-implemented for tests from the published architecture.

The network with nanodet's module names: ``backbone`` (torchvision's ShuffleNet V2 with LeakyReLU(0.1), no conv5),
``fpn`` (GhostPAN: ``reduce_layers`` ConvModules, ``top_down_blocks`` / ``bottom_up_blocks`` of ghost bottlenecks on
a concatenation, ``downsamples`` and ``extra_lvl_in_conv`` / ``extra_lvl_out_conv`` depthwise modules, bilinear x2
upsampling), ``head`` (NanoDetPlusHead: per level two 5x5 depthwise modules and a 1x1 ``gfl_cls``; the integral's
``distribution_project.project`` buffer), and the training-only ``aux_fpn`` (a copy of ``fpn``) + ``aux_head``
(SimpleConvHead: 3x3 GroupNorm towers, ``gfl_cls`` / ``gfl_reg``, per-level ``scales``). nanodet's modules:
``ConvModule`` = ``conv``, ``bn`` / ``gn``, ``act``; ``DepthwiseConvModule`` = ``depthwise``, ``dwnorm``, act,
``pointwise``, ``pwnorm``, act; ghost modules = ``Sequential(conv, BN, act or nothing)``.

:meth:`NanoDetPlus.forward` returns the head's ``(B, N, C + 4 (R + 1))`` logits (points row-major, finest level
first); :meth:`NanoDetPlus.forward_onnx` the exported tensor (class scores through a sigmoid). :func:`postprocess`
is nanodet's ``get_bboxes`` + ``multiclass_nms``: points ``(x, y) * stride`` without offset, softmax integral times
the stride, boxes clipped to the input, (point, class) pairs scoring above 0.05, class-aware greedy NMS at IoU 0.6
(boxes shifted per class by the largest coordinate + 1), the 100 best.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .torchvision_v2 import TorchvisionShuffleNetV2

#: The published models: backbone width, neck / head channels (the auxiliary head reads twice that), input size.
MODELS = {
    'nanodet-plus-m_320': (1.0, 96, 320),
    'nanodet-plus-m_416': (1.0, 96, 416),
    'nanodet-plus-m-1.5x_320': (1.5, 128, 320),
    'nanodet-plus-m-1.5x_416': (1.5, 128, 416),
}
STAGES = {1.0: (116, 232, 464), 1.5: (176, 352, 704)}
STRIDES = (8, 16, 32, 64)
REG_MAX = 7


def _act() -> nn.Module:
    return nn.LeakyReLU(0.1)


class ConvModule(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, norm: Optional[str] = 'bn') -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=norm is None)
        self.norm_name = norm
        if norm == 'bn':
            self.bn = nn.BatchNorm2d(cout)
        elif norm == 'gn':
            self.gn = nn.GroupNorm(32, cout)
        self.act = _act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm_name:
            x = getattr(self, self.norm_name)(x)
        return self.act(x)


class DepthwiseConvModule(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, k, stride, k // 2, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.dwnorm, self.pwnorm, self.act = nn.BatchNorm2d(cin), nn.BatchNorm2d(cout), _act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.pwnorm(self.pointwise(self.act(self.dwnorm(self.depthwise(x))))))


class GhostModule(nn.Module):
    def __init__(self, cin: int, cout: int, act: bool) -> None:
        super().__init__()
        init = (cout + 1) // 2
        self.primary_conv = nn.Sequential(nn.Conv2d(cin, init, 1, bias=False), nn.BatchNorm2d(init),
                                          _act() if act else nn.Sequential())
        self.cheap_operation = nn.Sequential(nn.Conv2d(init, init, 3, 1, 1, groups=init, bias=False),
                                             nn.BatchNorm2d(init), _act() if act else nn.Sequential())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.primary_conv(x)
        return torch.cat([y, self.cheap_operation(y)], 1)


class GhostBottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, k: int) -> None:
        super().__init__()
        self.ghost1, self.ghost2 = GhostModule(cin, mid, True), GhostModule(mid, cout, False)
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cin, k, 1, k // 2, groups=cin, bias=False), nn.BatchNorm2d(cin),
                                      nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ghost2(self.ghost1(x)) + self.shortcut(x)


class GhostBlocks(nn.Module):
    def __init__(self, cin: int, cout: int, k: int = 5) -> None:
        super().__init__()
        self.blocks = nn.Sequential(GhostBottleneck(cin, cout, cout, k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class GhostPAN(nn.Module):
    def __init__(self, in_channels: tuple[int, ...], ch: int, k: int = 5) -> None:
        super().__init__()
        n = len(in_channels)
        self.upsample = nn.Upsample(scale_factor=2, mode='bilinear')
        self.reduce_layers = nn.ModuleList(ConvModule(c, ch, 1) for c in in_channels)
        self.top_down_blocks = nn.ModuleList(GhostBlocks(2 * ch, ch, k) for _ in range(n - 1))
        self.downsamples = nn.ModuleList(DepthwiseConvModule(ch, ch, k, 2) for _ in range(n - 1))
        self.bottom_up_blocks = nn.ModuleList(GhostBlocks(2 * ch, ch, k) for _ in range(n - 1))
        self.extra_lvl_in_conv = nn.ModuleList([DepthwiseConvModule(ch, ch, k, 2)])
        self.extra_lvl_out_conv = nn.ModuleList([DepthwiseConvModule(ch, ch, k, 2)])

    def forward(self, feats: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        xs = [layer(f) for layer, f in zip(self.reduce_layers, feats)]
        n = len(xs)
        tops = [xs[-1]]
        for i in range(n - 1, 0, -1):  # coarse to fine
            tops.insert(0, self.top_down_blocks[n - 1 - i](torch.cat([self.upsample(tops[0]), xs[i - 1]], 1)))
        outs = [tops[0]]
        for i in range(n - 1):
            outs.append(self.bottom_up_blocks[i](torch.cat([self.downsamples[i](outs[-1]), tops[i + 1]], 1)))
        outs.append(self.extra_lvl_in_conv[0](xs[-1]) + self.extra_lvl_out_conv[0](outs[-1]))
        return tuple(outs)


class Integral(nn.Module):
    def __init__(self, reg_max: int) -> None:
        super().__init__()
        self.reg_max = reg_max
        self.register_buffer('project', torch.linspace(0, reg_max, reg_max + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prob = F.softmax(x.reshape(*x.shape[:-1], 4, self.reg_max + 1), dim=-1)
        return (prob * self.project.type_as(x)).sum(-1)


class NanoDetPlusHead(nn.Module):
    def __init__(self, num_classes: int, ch: int, k: int = 5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.cls_convs = nn.ModuleList(
            nn.ModuleList(DepthwiseConvModule(ch, ch, k) for _ in range(2)) for _ in STRIDES)
        self.gfl_cls = nn.ModuleList(nn.Conv2d(ch, num_classes + 4 * (REG_MAX + 1), 1) for _ in STRIDES)
        self.distribution_project = Integral(REG_MAX)

    def forward(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        outs = []
        for x, convs, last in zip(feats, self.cls_convs, self.gfl_cls):
            for conv in convs:
                x = conv(x)
            outs.append(last(x).flatten(2))
        return torch.cat(outs, 2).permute(0, 2, 1)


class SimpleConvHead(nn.Module):
    def __init__(self, num_classes: int, ch: int) -> None:
        super().__init__()
        self.cls_convs = nn.ModuleList(ConvModule(ch, ch, 3, norm='gn') for _ in range(4))
        self.reg_convs = nn.ModuleList(ConvModule(ch, ch, 3, norm='gn') for _ in range(4))
        self.gfl_cls = nn.Conv2d(ch, num_classes, 3, padding=1)
        self.gfl_reg = nn.Conv2d(ch, 4 * (REG_MAX + 1), 3, padding=1)
        self.scales = nn.ModuleList(_Scale() for _ in STRIDES)


class _Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))


def nanodet_backbone(width: float) -> nn.Module:
    """torchvision's ShuffleNet V2 (same names) with LeakyReLU(0.1), without conv5 and the classifier."""
    net = TorchvisionShuffleNetV2(width)
    del net.conv5, net.fc
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.ReLU):
                setattr(module, name, _act())
    return net


class NanoDetPlus(nn.Module):
    def __init__(self, name: str, num_classes: int = 80) -> None:
        super().__init__()
        width, ch, self.input_size = MODELS[name]
        self.backbone = nanodet_backbone(width)
        self.fpn = GhostPAN(STAGES[width], ch)
        self.head = NanoDetPlusHead(num_classes, ch)
        self.aux_fpn = copy.deepcopy(self.fpn)
        self.aux_head = SimpleConvHead(num_classes, 2 * ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        x = b.maxpool(b.conv1(x))
        feats = []
        for stage in (b.stage2, b.stage3, b.stage4):
            x = stage(x)
            feats.append(x)
        return self.head(self.fpn(tuple(feats)))

    def forward_onnx(self, x: torch.Tensor) -> torch.Tensor:
        out = self.forward(x)
        nc = self.head.num_classes
        return torch.cat([out[..., :nc].sigmoid(), out[..., nc:]], -1)


def _greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_thr: float) -> torch.Tensor:
    """Indices kept by greedy NMS (IoU > ``iou_thr`` suppresses), by decreasing score."""
    order = scores.argsort(descending=True)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    alive = torch.ones(len(order), dtype=torch.bool)
    for pos, idx in enumerate(order.tolist()):
        if not alive[pos]:
            continue
        keep.append(idx)
        rest = order[pos + 1:]
        lt = torch.maximum(boxes[idx, :2], boxes[rest, :2])
        rb = torch.minimum(boxes[idx, 2:], boxes[rest, 2:])
        inter = (rb - lt).clamp(min=0).prod(-1)
        iou = inter / (area[idx] + area[rest] - inter)
        alive[pos + 1:] &= iou <= iou_thr
    return torch.tensor(keep, dtype=torch.long)


def postprocess(raw: torch.Tensor, input_hw: tuple[int, int], num_classes: int = 80, score_thr: float = 0.05,
                iou_thr: float = 0.6, max_num: int = 100) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """nanodet's decoding and NMS of the head output ``raw`` (logits): per image ``(dets (K, 5), labels (K,))``."""
    h, w = input_hw
    points = []
    for s in STRIDES:
        ys, xs = torch.meshgrid(torch.arange(-(-h // s)) * s, torch.arange(-(-w // s)) * s, indexing='ij')
        points.append(torch.stack([xs.flatten(), ys.flatten(), torch.full_like(xs.flatten(), s)], -1))
    prior = torch.cat(points).to(raw.dtype)
    proj = torch.linspace(0, REG_MAX, REG_MAX + 1, dtype=raw.dtype)
    results = []
    for out in raw:
        scores = out[:, :num_classes].sigmoid()
        dist = (F.softmax(out[:, num_classes:].reshape(-1, 4, REG_MAX + 1), -1) * proj).sum(-1) * prior[:, 2:3]
        boxes = torch.cat([prior[:, :2] - dist[:, :2], prior[:, :2] + dist[:, 2:]], -1)
        boxes = torch.minimum(boxes.clamp(min=0), torch.tensor([w, h, w, h], dtype=raw.dtype))
        point_idx, labels = (scores > score_thr).nonzero(as_tuple=True)
        cand, cand_scores = boxes[point_idx], scores[point_idx, labels]
        if len(cand) == 0:
            results.append((raw.new_zeros((0, 5)), labels))
            continue
        shifted = cand + labels[:, None].to(cand) * (cand.max() + 1)
        keep = _greedy_nms(shifted, cand_scores, iou_thr)[:max_num]
        results.append((torch.cat([cand[keep], cand_scores[keep, None]], 1), labels[keep]))
    return results
