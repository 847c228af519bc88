"""Multiply-adds and parameters, counted with mmengine's analysis machinery (fvcore's JIT-trace counter).

Counted operator set (``op_set='macs'``, the default): convolutions and matrix products only (``aten::_convolution``,
``addmm``, ``linear``, ``matmul``, ``mm``, ``bmm``, ``einsum``), one fused multiply-add = 1, conv bias not counted.
This is how the ShuffleNet papers and the reference counts of ``shufflenet_det.analysis.published`` count "FLOPs":
mmengine's default ``FlopAnalyzer`` additionally counts BatchNorm (which deployment folds into the conv), norms,
upsampling and adaptive pooling; with those ShuffleNet V2 1.0x reads 148.8M (+2.7 %) instead of 144.9M (published:
146M in the paper, 0.145 G by torchvision).
``op_set='mmengine'`` keeps mmengine's default handles for comparison with other mmengine-counted models.
Element-wise ops (activations, adds, concat, channel shuffle, max/avg pooling) are never counted.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence, cast

import torch
from mmengine.analysis import FlopAnalyzer, parameter_count
from torch import nn

from ..models.backbones.base import ShuffleBackboneBase
from ..utils.build import build_backbone
from ..utils.predict import tensor_mode

#: mmengine/fvcore operator handles kept by ``op_set='macs'``: convolutions and matrix products.
MAC_OPS: tuple[str, ...] = ('aten::_convolution', 'aten::addmm', 'aten::linear', 'aten::matmul', 'aten::mm',
                            'aten::bmm', 'aten::einsum')
OP_SETS: tuple[str, ...] = ('macs', 'mmengine')


def _check_op_set(op_set: str) -> str:
    if op_set not in OP_SETS:
        raise ValueError(f'op_set={op_set!r} is not supported; allowed values: {list(OP_SETS)}')
    return op_set


def _flop_analyzer(model: nn.Module, inputs: tuple, op_set: str) -> FlopAnalyzer:
    analyzer = FlopAnalyzer(model, inputs)
    if op_set == 'macs':
        # Keep mmengine's own handles for the multiply-accumulate ops; every other default handle (BN, norms,
        # upsample, pooling, ...) becomes an ignored op. (set_op_handle(name, None) alone only marks a name as
        # ignored and leaves an existing handle in place, hence clear_op_handles first.)
        defaults = dict(analyzer._op_handles)
        analyzer.clear_op_handles()
        analyzer.set_op_handle(**{name: handle for name, handle in defaults.items() if name in MAC_OPS})
        analyzer.set_op_handle(**{name: None for name in defaults if name not in MAC_OPS})
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')
    return analyzer


def _as_input_shape(input_shape: int | Sequence[int]) -> tuple[int, ...]:
    """``224`` -> ``(1, 3, 224, 224)``; ``(H, W)`` -> ``(1, 3, H, W)``; ``(C, H, W)`` -> ``(1, C, H, W)``."""
    if isinstance(input_shape, int):
        shape: tuple[int, ...] = (input_shape, input_shape)
    else:
        shape = tuple(int(s) for s in input_shape)
    if len(shape) == 1:
        shape = (shape[0], shape[0])
    if len(shape) == 2:
        shape = (1, 3) + shape
    elif len(shape) == 3:
        shape = (1,) + shape
    if len(shape) != 4 or any(s <= 0 for s in shape):
        raise ValueError(f'input_shape={input_shape!r} must be S, (H, W), (C, H, W) or (N, C, H, W) of positive ints')
    return shape


def model_complexity(model: nn.Module, input_shape: int | Sequence[int] = 224, op_set: str = 'macs') -> dict:
    """Multiply-adds and parameters of ``model`` on a random input of ``input_shape``.

    An mmdet detector is counted in ``mode='tensor'`` (its ``_forward``: backbone + neck + head forward, no
    post-processing), as mmdet's ``get_flops.py`` does, with data samples carrying the input shape; any other module
    is called on the input tensor. Nested outputs are flattened. The model is put in eval mode for the count and
    restored afterwards.

    Returns:
        dict with ``flops`` (multiply-adds, int), ``params`` (int), ``input_shape`` and ``op_set``, and
        ``flops_by_operator`` (dict operator -> count).
    """
    _check_op_set(op_set)
    shape = _as_input_shape(input_shape)
    was_training = model.training
    model.eval()
    try:
        wrapper = tensor_mode(model, shape)
        param = next(model.parameters(), None)
        x = torch.randn(shape, device=param.device if param is not None else 'cpu')
        with torch.no_grad():
            analyzer = _flop_analyzer(wrapper, (x,), op_set)
            flops = int(analyzer.total())
            by_op = {k: int(v) for k, v in analyzer.by_operator().items()}
    finally:
        model.train(was_training)
    return dict(flops=flops, params=int(parameter_count(model)['']), input_shape=shape, op_set=op_set,
                flops_by_operator=by_op)


#: Family-specific ImageNet heads: backbone type -> ``factory(in_channels, num_classes, bias)`` returning a module
#: that maps the last feature map to logits. Families without an entry use global average pooling + ``Linear``.
CLASSIFIER_HEADS: dict[str, Callable[[int, int, bool], nn.Module]] = {}


def register_classifier_head(backbone_type: str,
                             factory: Callable[[int, int, bool], nn.Module]) -> Callable[[int, int, bool], nn.Module]:
    """Use ``factory``'s head instead of GAP + Linear for ``backbone_type`` in :func:`classifier_complexity`."""
    if backbone_type in CLASSIFIER_HEADS:
        raise ValueError(f'a classifier head for {backbone_type!r} is already registered')
    CLASSIFIER_HEADS[backbone_type] = factory
    return factory


class ImageClassifier(nn.Module):
    """Backbone + global average pool + linear classifier: the published ImageNet head of every ShuffleNet.

    ``head`` (optional) replaces pooling + linear by a family-specific head taking the last feature map.
    """

    def __init__(self, backbone: nn.Module, in_channels: int, num_classes: int = 1000, bias: bool = True,
                 head: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.backbone = backbone
        if head is None:
            self.fc = nn.Linear(in_channels, num_classes, bias=bias)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.backbone(x)[-1]
        if self.head is not None:
            return self.head(feat)
        return self.fc(feat.mean((2, 3)))


def last_output_backbone(backbone_cfg: Mapping[str, Any]) -> ShuffleBackboneBase:
    """The backbone of ``backbone_cfg`` (built by :func:`shufflenet_det.utils.build.build_backbone`) returning only
    its last output (``out_indices=(last,)``), as the ImageNet classifier of the papers uses it. The type is a
    ShuffleNet family's (the output indices and widths are :class:`ShuffleBackboneBase`'s)."""
    if not isinstance(backbone_cfg, Mapping):
        raise ValueError(f'backbone_cfg={backbone_cfg!r} must be a dict with a "type" key')
    probe = cast(ShuffleBackboneBase, build_backbone({**backbone_cfg, 'out_indices': (0,)}))
    return cast(ShuffleBackboneBase, build_backbone({**backbone_cfg, 'out_indices': (probe.num_outputs - 1,)}))


def classifier_complexity(backbone_cfg: dict,
                          input_size: int | Sequence[int] = 224,
                          num_classes: int = 1000,
                          classifier_bias: bool = True,
                          op_set: str = 'macs') -> dict:
    """Complexity of the ImageNet classifier built on ``backbone_cfg`` (how the papers report FLOPs and params).

    The backbone is built with only its last output (``out_indices=(last,)``), followed by global average pooling
    and ``Linear(last_channels, num_classes)``, or by the family's head registered in :data:`CLASSIFIER_HEADS`
    (e.g. ShuffleNetV2+'s SE + ``Linear(1280, 1280)`` + h-swish + classifier). Returns :func:`model_complexity`'s
    dict plus ``out_channels`` and ``out_strides`` of the full backbone (every output index).
    """
    backbone = last_output_backbone(backbone_cfg)
    head_factory = CLASSIFIER_HEADS.get(backbone_cfg['type'])
    head = head_factory(backbone.out_channels[-1], num_classes, classifier_bias) if head_factory else None
    model = ImageClassifier(backbone, backbone.out_channels[-1], num_classes, bias=classifier_bias, head=head)
    result = model_complexity(model, input_size, op_set=op_set)
    result.update(out_channels=backbone._all_channels, out_strides=backbone._all_strides)
    return result
