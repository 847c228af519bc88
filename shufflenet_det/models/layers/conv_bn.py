"""Conv-norm-activation triples laid out as flat ``nn.Sequential`` items.

Keeping conv, norm and activation as separate Sequential items (instead of an mmcv ``ConvModule``) preserves the
torchvision state-dict layout (``branch2.0`` conv, ``branch2.1`` bn, ...), so existing weights load unchanged, and
lets mmcv's ``fuse_conv_bn`` (:func:`shufflenet_det.models.layers.fuse.fold_batchnorm`) fold every BN into the conv
that precedes it.
"""
from __future__ import annotations

from typing import Optional

from mmcv.cnn import build_activation_layer, build_conv_layer, build_norm_layer
from torch import nn


def conv_norm_act(in_channels: int,
                  out_channels: int,
                  kernel_size: int,
                  stride: int = 1,
                  groups: int = 1,
                  conv_cfg: Optional[dict] = None,
                  norm_cfg: Optional[dict] = None,
                  act_cfg: Optional[dict] = None,
                  with_act_slot: bool = True) -> list[nn.Module]:
    """Return ``[conv, norm, act]`` (bias-free conv, padding ``k // 2``).

    ``act_cfg=None`` yields an ``nn.Identity`` in the activation slot when ``with_act_slot`` is True, so the indices
    of the following layers (and thus the state-dict keys) do not depend on the activation choice.
    """
    layers: list[nn.Module] = [
        build_conv_layer(conv_cfg, in_channels, out_channels, kernel_size, stride=stride,
                         padding=kernel_size // 2, groups=groups, bias=False),
        build_norm_layer(norm_cfg if norm_cfg is not None else dict(type='BN'), out_channels)[1],
    ]
    if act_cfg is not None:
        layers.append(build_activation_layer(act_cfg))
    elif with_act_slot:
        layers.append(nn.Identity())
    return layers
