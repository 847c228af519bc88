"""torchvision ``shufflenetv2_x*.pth`` -> :class:`~shufflenet_det.models.backbones.shufflenet_v2.ShuffleNetV2`.

The backbone is laid out exactly like torchvision's ``ShuffleNetV2`` (same module names, same split/concat/shuffle
formulation), so the conversion keeps every tensor and key and only drops the ImageNet classifier ``fc.*``. The
result is verified against the backbone built with the requested ``widen_factor`` (keys and shapes), which catches a
file of another width.
"""
from __future__ import annotations

from typing import Any

import torch

from ..models.backbones.shufflenet_v2 import DEFAULT_LAYOUT
from .core import register_converter
from .keymap import rename_to_target, require_kwarg, target_state_dict

#: Source keys that are not part of the backbone (torchvision's classifier).
TORCHVISION_IGNORED = r'fc\.(weight|bias)'


@register_converter('torchvision', 'ShuffleNetV2')
def convert_torchvision_shufflenet_v2(state_dict: dict[str, torch.Tensor],
                                      backbone_kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Drop ``fc.*``; keys are otherwise identical (checked, with shapes, against the target backbone)."""
    what = f'torchvision ShuffleNetV2 -> ShuffleNetV2({backbone_kwargs})'
    require_kwarg(backbone_kwargs, 'layout', 'torchvision', DEFAULT_LAYOUT, what,
                  ' (torchvision weights compute another function in the official Megvii formulation)')
    target = target_state_dict('ShuffleNetV2', backbone_kwargs)
    return rename_to_target(state_dict, target, lambda key: key, TORCHVISION_IGNORED, what)
