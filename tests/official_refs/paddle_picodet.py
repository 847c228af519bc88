"""PaddleDetection's PicoDet (release 2.6, ``ppdet/modeling``) re-implemented in plain PyTorch with Paddle's parameter
names, from the published architecture: the neck ``CSPPAN`` (``necks/csp_pan.py``), the head ``PicoHead`` with its
``PicoFeat`` tower (``heads/pico_head.py``; the ``p{3..}_feat.scale_reg`` scales and the integral's ``project``
buffer that ``GFLHead`` registers are kept, as they are in the published files) and the decoding of
``PicoHead.post_process`` (points at ``(i + cell_offset) * stride``, softmax integral over ``reg_max + 1`` bins,
distance2bbox, ``MultiClassNMS``). The backbone is any module returning the three (or four) stage outputs in Paddle's
names (``official_refs.paddle_esnet`` for ESNet).

Paddle's layers map to PyTorch one to one: ``Conv2D`` (weight ``[out, in / groups, k, k]``), ``BatchNorm2D``
(``weight``, ``bias``, ``_mean``, ``_variance``; eps 1e-5), ``F.hardswish`` / ``F.leaky_relu`` (slope 0.01),
``nn.Upsample(scale_factor=2, mode='nearest')``. :func:`paddle_state_dict` gives the state dict with those names as
numpy arrays: what ``paddle.save`` writes.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class PaddleBN(nn.BatchNorm2d):
    """``paddle.nn.BatchNorm2D``: the running statistics are named ``_mean`` / ``_variance``; no counter."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, eps=1e-5, track_running_stats=False)
        self.register_buffer('_mean', torch.zeros(channels))
        self.register_buffer('_variance', torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # inference: the running statistics
        return F.batch_norm(x, self._mean, self._variance, self.weight, self.bias, False, 0.0, self.eps)


def act_fn(x: torch.Tensor, act: str) -> torch.Tensor:
    if act == 'leaky_relu':
        return F.leaky_relu(x, 0.01)
    if act == 'hard_swish':
        return F.hardswish(x)
    raise ValueError(act)


def conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=bias)


# ------------------------------------------------------------------------------------------------------ CSP-PAN
class ConvBNLayer(nn.Module):
    """csp_pan.ConvBNLayer: ``conv`` (no bias), ``bn``, activation."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1,
                 act: str = 'leaky_relu') -> None:
        super().__init__()
        self.act = act
        self.conv = conv(cin, cout, k, stride, groups)
        self.bn = PaddleBN(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return act_fn(self.bn(self.conv(x)), self.act)


class DPModule(nn.Module):
    """csp_pan.DP_Module: depthwise ``dwconv`` + ``bn1`` + act, pointwise ``pwconv`` + ``bn2`` + act."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, act: str = 'leaky_relu') -> None:
        super().__init__()
        self.act = act
        self.dwconv = conv(cin, cout, k, stride, groups=cout)
        self.bn1 = PaddleBN(cout)
        self.pwconv = conv(cout, cout, 1)
        self.bn2 = PaddleBN(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = act_fn(self.bn1(self.dwconv(x)), self.act)
        return act_fn(self.bn2(self.pwconv(x)), self.act)


def conv_func(depthwise: bool, cin: int, cout: int, k: int, stride: int, act: str) -> nn.Module:
    return DPModule(cin, cout, k, stride, act) if depthwise else ConvBNLayer(cin, cout, k, stride, act=act)


class DarknetBottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, expansion: float, add_identity: bool, depthwise: bool,
                 act: str) -> None:
        super().__init__()
        hidden = int(cout * expansion)
        self.conv1 = ConvBNLayer(cin, hidden, 1, act=act)
        self.conv2 = conv_func(depthwise, hidden, cout, k, 1, act)
        self.add_identity = add_identity and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class CSPLayer(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, num_blocks: int, depthwise: bool, act: str) -> None:
        super().__init__()
        mid = int(cout * 0.5)
        self.main_conv = ConvBNLayer(cin, mid, 1, act=act)
        self.short_conv = ConvBNLayer(cin, mid, 1, act=act)
        self.final_conv = ConvBNLayer(2 * mid, cout, 1, act=act)
        self.blocks = nn.Sequential(*[DarknetBottleneck(mid, mid, k, 1.0, False, depthwise, act)
                                      for _ in range(num_blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = self.short_conv(x)
        main = self.blocks(self.main_conv(x))
        return self.final_conv(torch.cat((main, short), 1))


class ChannelT(nn.Module):
    def __init__(self, in_channels: Sequence[int], out_channels: int, act: str) -> None:
        super().__init__()
        self.convs = nn.ModuleList(ConvBNLayer(c, out_channels, 1, act=act) for c in in_channels)

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [c(x) for c, x in zip(self.convs, xs)]


class CSPPAN(nn.Module):
    """csp_pan.CSPPAN (defaults of PicoDet: kernel 5, depthwise, hard_swish; ``num_features=4`` adds the extra
    top level from ``first_top_conv(inputs[-1]) + second_top_conv(outs[-1])``)."""

    def __init__(self, in_channels: Sequence[int], out_channels: int, kernel_size: int = 5, num_features: int = 3,
                 num_csp_blocks: int = 1, use_depthwise: bool = True, act: str = 'hard_swish') -> None:
        super().__init__()
        self.conv_t = ChannelT(in_channels, out_channels, act)
        n = len(in_channels)
        self.n = n
        self.num_features = num_features
        c = out_channels
        if num_features == 4:
            self.first_top_conv = conv_func(use_depthwise, c, c, kernel_size, 2, act)
            self.second_top_conv = conv_func(use_depthwise, c, c, kernel_size, 2, act)
        self.top_down_blocks = nn.ModuleList(CSPLayer(c * 2, c, kernel_size, num_csp_blocks, use_depthwise, act)
                                             for _ in range(n - 1))
        self.downsamples = nn.ModuleList(conv_func(use_depthwise, c, c, kernel_size, 2, act) for _ in range(n - 1))
        self.bottom_up_blocks = nn.ModuleList(CSPLayer(c * 2, c, kernel_size, num_csp_blocks, use_depthwise, act)
                                              for _ in range(n - 1))

    def forward(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        feats = self.conv_t(inputs)
        inner = [feats[-1]]
        for idx in range(self.n - 1, 0, -1):
            up = F.interpolate(inner[0], scale_factor=2.0, mode='nearest')
            inner.insert(0, self.top_down_blocks[self.n - 1 - idx](torch.cat([up, feats[idx - 1]], 1)))
        outs = [inner[0]]
        for idx in range(self.n - 1):
            down = self.downsamples[idx](outs[-1])
            outs.append(self.bottom_up_blocks[idx](torch.cat([down, inner[idx + 1]], 1)))
        if self.num_features == 4:
            outs.append(self.first_top_conv(feats[-1]) + self.second_top_conv(outs[-1]))
        return outs


# ------------------------------------------------------------------------------------------------------ PicoHead
class ConvNormLayer(nn.Module):
    """ppdet.modeling.layers.ConvNormLayer with BN and no bias: ``conv``, ``norm`` (no activation)."""

    def __init__(self, cin: int, cout: int, k: int, groups: int = 1) -> None:
        super().__init__()
        self.conv = conv(cin, cout, k, 1, groups)
        self.norm = PaddleBN(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class PicoFeat(nn.Module):
    """pico_head.PicoFeat. Paddle registers ``cls_conv_dw{level}.{i}`` (one name holding a dot); here the level's
    ``cls_conv_dw{level}`` is a ModuleList indexed by ``i``: the same state-dict keys. Each conv is followed by the
    activation; the towers run dw0, pw0, dw1, pw1, ..."""

    def __init__(self, feat_in: int, feat_out: int, num_fpn_stride: int, num_convs: int, share_cls_reg: bool,
                 act: str = 'hard_swish') -> None:
        super().__init__()
        self.num_convs, self.share_cls_reg, self.act = num_convs, share_cls_reg, act
        branches = ('cls',) if share_cls_reg else ('cls', 'reg')
        for level in range(num_fpn_stride):
            for branch in branches:
                for kind, k in (('dw', 5), ('pw', 1)):
                    layers = nn.ModuleList(
                        ConvNormLayer(feat_in if i == 0 else feat_out, feat_out, k,
                                      groups=feat_out if kind == 'dw' else 1) for i in range(num_convs))
                    self.add_module(f'{branch}_conv_{kind}{level}', layers)

    def tower(self, x: torch.Tensor, branch: str, level: int) -> torch.Tensor:
        dws, pws = getattr(self, f'{branch}_conv_dw{level}'), getattr(self, f'{branch}_conv_pw{level}')
        for i in range(self.num_convs):
            x = act_fn(dws[i](x), self.act)
            x = act_fn(pws[i](x), self.act)
        return x

    def forward(self, x: torch.Tensor, level: int) -> tuple[torch.Tensor, torch.Tensor]:
        cls = self.tower(x, 'cls', level)
        return cls, (cls if self.share_cls_reg else self.tower(x, 'reg', level))


class ScaleReg(nn.Module):
    """GFLHead's ScaleReg: registered by PicoHead's base class, unused by PicoHead."""

    def __init__(self) -> None:
        super().__init__()
        self.scale_reg = nn.Parameter(torch.ones(1))


class PicoHead(nn.Module):
    """pico_head.PicoHead: ``conv_feat`` (PicoFeat), ``head_cls{i}`` (1x1, bias; also the box distribution when
    ``share_cls_reg``), ``head_reg{i}``; plus GFLHead's unused ``p{log2 stride}_feat.scale_reg`` and the integral's
    ``distribution_project.project`` buffer."""

    def __init__(self, num_classes: int, feat_in: int, feat_out: int, num_convs: int, strides: Sequence[int],
                 reg_max: int, share_cls_reg: bool, act: str = 'hard_swish') -> None:
        super().__init__()
        self.num_classes, self.reg_max, self.strides, self.share = num_classes, reg_max, list(strides), share_cls_reg
        self.conv_feat = PicoFeat(feat_in, feat_out, len(strides), num_convs, share_cls_reg, act)
        for s in strides:
            self.add_module(f'p{int(math.log2(s))}_feat', ScaleReg())
        reg = 4 * (reg_max + 1)
        for i in range(len(strides)):
            self.add_module(f'head_cls{i}', nn.Conv2d(feat_out, num_classes + (reg if share_cls_reg else 0), 1))
            if not share_cls_reg:
                self.add_module(f'head_reg{i}', nn.Conv2d(feat_out, reg, 1))
        self.distribution_project = nn.Module()
        self.distribution_project.register_buffer('project', torch.linspace(0, reg_max, reg_max + 1))

    def forward(self, feats: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per level the raw ``(cls logits [N, C, H, W], box distribution logits [N, 4 (reg_max + 1), H, W])``."""
        out = []
        for i, x in enumerate(feats):
            cls_feat, reg_feat = self.conv_feat(x, i)
            if self.share:
                cls, reg = getattr(self, f'head_cls{i}')(cls_feat).split([self.num_classes, 4 * (self.reg_max + 1)], 1)
            else:
                cls, reg = getattr(self, f'head_cls{i}')(cls_feat), getattr(self, f'head_reg{i}')(reg_feat)
            out.append((cls, reg))
        return out


class PicoDet(nn.Module):
    """ppdet.modeling.architectures.PicoDet: ``backbone``, ``neck``, ``head``."""

    def __init__(self, backbone: nn.Module, in_channels: Sequence[int], num_classes: int = 80, neck_out: int = 96,
                 num_features: int = 4, num_convs: int = 2, reg_max: int = 7, share_cls_reg: bool = True,
                 strides: Sequence[int] = (8, 16, 32, 64), cell_offset: float = 0.5,
                 num_csp_blocks: int = 1, act: str = 'hard_swish') -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = CSPPAN(in_channels, neck_out, 5, num_features, num_csp_blocks, True, act)
        self.head = PicoHead(num_classes, neck_out, neck_out, num_convs, strides, reg_max, share_cls_reg, act)
        self.cell_offset = cell_offset

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return self.head(self.neck(self.backbone(x)))

    def decode(self, outs: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(boxes [N, P, 4] x1y1x2y2 in input pixels, scores [N, P, C])``: PicoHead's eval decoding."""
        boxes, scores = [], []
        n = self.head.reg_max + 1
        project = self.head.distribution_project.project
        for (cls, reg), stride in zip(outs, self.head.strides):
            b, _, h, w = cls.shape
            ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                    indexing='ij')
            points = torch.stack([(xs.flatten() + self.cell_offset) * stride,
                                  (ys.flatten() + self.cell_offset) * stride], -1)
            dist = F.softmax(reg.permute(0, 2, 3, 1).reshape(-1, n), 1) @ project
            dist = dist.reshape(b, h * w, 4) * stride
            boxes.append(torch.cat([points - dist[..., :2], points + dist[..., 2:]], -1))
            scores.append(torch.sigmoid(cls).flatten(2).transpose(1, 2))
        return torch.cat(boxes, 1), torch.cat(scores, 1)


def iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Paddle's NMS overlap with ``normalized=True`` (no +1 on widths)."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt, rb = torch.max(a[:, None, :2], b[None, :, :2]), torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None] - inter
    return torch.where(union > 0, inter / union, torch.zeros_like(inter))


def multiclass_nms(boxes: torch.Tensor, scores: torch.Tensor, score_threshold: float = 0.025,
                   nms_top_k: int = 1000, keep_top_k: int = 100, nms_threshold: float = 0.6,
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Paddle's ``multiclass_nms`` for one image (``boxes [P, 4]``, ``scores [P, C]``): per class the ``nms_top_k``
    best candidates above ``score_threshold``, greedy NMS at ``nms_threshold``, then the ``keep_top_k`` best over all
    classes. Returns ``(dets [K, 5] = box + score, labels [K])`` sorted by score."""
    keep_boxes, keep_scores, keep_labels = [], [], []
    for c in range(scores.shape[1]):
        s = scores[:, c]
        idx = torch.nonzero(s > score_threshold).flatten()
        if not len(idx):
            continue
        order = idx[torch.argsort(s[idx], descending=True, stable=True)][:nms_top_k]
        cand = boxes[order]
        iou = iou_matrix(cand, cand)
        alive = torch.ones(len(order), dtype=torch.bool)
        for i in range(len(order)):
            if alive[i]:
                alive[i + 1:] &= iou[i, i + 1:] <= nms_threshold
        kept = order[alive]
        keep_boxes.append(boxes[kept])
        keep_scores.append(s[kept])
        keep_labels.append(torch.full((len(kept),), c, dtype=torch.long))
    if not keep_boxes:
        return torch.zeros(0, 5), torch.zeros(0, dtype=torch.long)
    all_scores = torch.cat(keep_scores)
    order = torch.argsort(all_scores, descending=True, stable=True)[:keep_top_k]
    dets = torch.cat([torch.cat(keep_boxes)[order], all_scores[order, None]], 1)
    return dets, torch.cat(keep_labels)[order]


def detect(model: PicoDet, x: torch.Tensor, scale_factor: Optional[tuple[float, float]] = None,
           clip: bool = False, **nms: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """PicoHead.post_process: decode (boxes clipped to the input with ``clip``: ``distance2bbox(..., max_shapes)``),
    rescale by ``scale_factor = (h_scale, w_scale)``, multiclass NMS per image."""
    with torch.no_grad():
        boxes, scores = model.decode(model(x))
    if clip:
        h, w = x.shape[-2:]
        boxes = torch.stack([boxes[..., 0].clamp(0, w), boxes[..., 1].clamp(0, h), boxes[..., 2].clamp(0, w),
                             boxes[..., 3].clamp(0, h)], -1)
    if scale_factor is not None:
        sy, sx = scale_factor
        boxes = boxes / torch.tensor([sx, sy, sx, sy])
    return [multiclass_nms(b, s, **nms) for b, s in zip(boxes, scores)]  # type: ignore[arg-type]


_PADDLE_BN = {'running_mean': '_mean', 'running_var': '_variance'}


def paddle_state_dict(model: nn.Module) -> dict[str, np.ndarray]:
    """The state dict ``paddle.save`` writes for ``model``: Paddle names -> float32 numpy arrays (a backbone built
    with PyTorch BNs, ``official_refs.paddle_esnet``, gets Paddle's ``_mean`` / ``_variance`` and loses its
    counters)."""
    out = {}
    for key, value in model.state_dict().items():
        head, _, leaf = key.rpartition('.')
        if leaf == 'num_batches_tracked':
            continue
        out[f'{head}.{_PADDLE_BN.get(leaf, leaf)}'] = value.detach().cpu().numpy().copy()
    return out


def picodet(variant: str, num_classes: int = 80) -> PicoDet:
    """The legacy PicoDet-S / M / L (``configs/picodet/legacy_model/picodet_{s,m,l}_*_coco.yml``): ESNet-<variant>,
    CSP-PAN of 96 / 128 / 160 channels with 4 levels, PicoHead with 2 / 4 / 4 tower convs, shared cls / reg,
    reg_max 7, cell_offset 0.5."""
    from .paddle_esnet import picodet_esnet

    backbone = picodet_esnet(variant)
    width = {'S': 96, 'M': 128, 'L': 160}[variant]
    convs = {'S': 2, 'M': 4, 'L': 4}[variant]
    in_channels = {'S': (96, 192, 384), 'M': (128, 256, 512), 'L': (160, 320, 640)}[variant]
    return PicoDet(backbone, in_channels, num_classes, width, 4, convs, 7, True, (8, 16, 32, 64), 0.5)


def randomize_paddle_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random conv weights / biases and random BN affine parameters and statistics (``_mean`` / ``_variance``), in
    place, eval mode: every weight matters to the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            elif isinstance(m, PaddleBN):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
                m._mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m._variance.copy_(torch.rand(c, generator=gen) + 0.5)
            elif isinstance(m, nn.BatchNorm2d):  # a backbone with PyTorch BNs
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)  # type: ignore[operator]
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)  # type: ignore[operator]
            elif isinstance(m, ScaleReg):
                m.scale_reg.copy_(torch.rand(1, generator=gen) + 0.5)
    return model.eval()


class PaddleConvBN(nn.Module):
    """The backbones' ``ConvBNLayer``: ``_conv`` (no bias) + ``_batch_norm`` (Paddle's ``BatchNorm(act=...)``)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
                 slope: Optional[float] = None) -> None:
        super().__init__()
        self._conv = conv(cin, cout, k, stride, groups)
        self._batch_norm = PaddleBN(cout)
        self.slope = slope  # leaky_relu slope; None: no activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._batch_norm(self._conv(x))
        return y if self.slope is None else F.leaky_relu(y, self.slope)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ShuffleUnit(nn.Module):
    """ppdet ``shufflenet_v2.InvertedResidual`` (stride 1; ``_conv_pw``, ``_conv_dw``, ``_conv_linear``) and
    ``InvertedResidualDS`` (``_conv_dw_1``, ``_conv_linear_1``; ``_conv_pw_2``, ``_conv_dw_2``, ``_conv_linear_2``);
    both shuffle (2 groups) after the concat."""

    def __init__(self, cin: int, cout: int, down: bool, slope: float) -> None:
        super().__init__()
        self.down = down
        half = cout // 2
        if down:
            self._conv_dw_1 = PaddleConvBN(cin, cin, 3, 2, cin)
            self._conv_linear_1 = PaddleConvBN(cin, half, 1, slope=slope)
            self._conv_pw_2 = PaddleConvBN(cin, half, 1, slope=slope)
            self._conv_dw_2 = PaddleConvBN(half, half, 3, 2, half)
            self._conv_linear_2 = PaddleConvBN(half, half, 1, slope=slope)
        else:
            self._conv_pw = PaddleConvBN(cin // 2, half, 1, slope=slope)
            self._conv_dw = PaddleConvBN(half, half, 3, 1, half)
            self._conv_linear = PaddleConvBN(half, half, 1, slope=slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            a = self._conv_linear_1(self._conv_dw_1(x))
            b = self._conv_linear_2(self._conv_dw_2(self._conv_pw_2(x)))
        else:
            a, b = x.chunk(2, 1)
            b = self._conv_linear(self._conv_dw(self._conv_pw(b)))
        return channel_shuffle(torch.cat([a, b], 1), 2)


class PaddleShuffleNetV2(nn.Module):
    """ppdet ``backbones/shufflenet_v2.ShuffleNetV2`` (scale 1.0: 24 / 116 / 232 / 464, repeats 4 / 8 / 4,
    ``feature_maps [5, 13, 17]`` = the last unit of each stage, no last conv): ``_conv1`` (3x3 stride 2, act),
    max-pool 3x3 stride 2 pad 1, units named ``<stage>_<unit>`` (``2_1`` ... ``4_4``). ``act: leaky_relu`` is applied
    by Paddle's ``BatchNorm(act=...)``; ``slope`` is its negative slope."""

    def __init__(self, slope: float, channels: Sequence[int] = (24, 116, 232, 464),
                 repeats: Sequence[int] = (4, 8, 4)) -> None:
        super().__init__()
        self._conv1 = PaddleConvBN(3, channels[0], 3, 2, slope=slope)
        self.units: list[str] = []
        for s, n in enumerate(repeats):
            for i in range(n):
                name = f'{s + 2}_{i + 1}'
                self.add_module(name, ShuffleUnit(channels[s] if i == 0 else channels[s + 1], channels[s + 1],
                                                  i == 0, slope))
                self.units.append(name)
        self.last = {f'{s + 2}_{n}' for s, n in enumerate(repeats)}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.max_pool2d(self._conv1(x), 3, 2, 1)
        outs = []
        for name in self.units:
            x = getattr(self, name)(x)
            if name in self.last:
                outs.append(x)
        return outs


def picodet_shufflenetv2(slope: float, num_classes: int = 80) -> PicoDet:
    """``legacy_model/more_config/picodet_shufflenetv2_1x_416_coco.yml``: ShuffleNetV2 1.0x (leaky_relu of
    ``slope``), CSP-PAN 96, PicoHead 2 tower convs (hard swish)."""
    return PicoDet(PaddleShuffleNetV2(slope), (116, 232, 464), num_classes, 96, 4, 2, 7, True, (8, 16, 32, 64), 0.5)


class TinyBackbone(nn.Module):
    """A stand-in backbone for tests of the neck and head alone: three strided ConvBNLayers (strides 8, 16, 32)
    named like ESNet's ``ConvBNLayer`` (``_conv``, ``_batch_norm``) under ``stage{i}``."""

    def __init__(self, channels: Sequence[int] = (8, 16, 24)) -> None:
        super().__init__()
        self.channels = list(channels)
        cin = 3
        for i, c in enumerate(channels):
            layer = nn.Module()
            layer._conv = conv(cin, c, 3, 8 if i == 0 else 2)  # type: ignore[assignment]
            layer._batch_norm = PaddleBN(c)  # type: ignore[assignment]
            self.add_module(f'stage{i}', layer)
            cin = c

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i in range(len(self.channels)):
            layer = getattr(self, f'stage{i}')
            x = F.hardswish(layer._batch_norm(layer._conv(x)))
            outs.append(x)
        return outs


def paddle_bytes(state: dict[str, np.ndarray], protocol: int = 2, name_table: bool = True) -> bytes:
    """What ``paddle.save(layer.state_dict(), path, protocol=...)`` writes: a pickle of ``{name: ndarray}`` plus,
    optionally, the structured-name table (``StructuredToParameterName@@``)."""
    import pickle
    obj: dict[str, Any] = dict(state)
    if name_table:
        obj['StructuredToParameterName@@'] = {k: f'param_{i}.w_0' for i, k in enumerate(state)}
    return pickle.dumps(obj, protocol=protocol)
