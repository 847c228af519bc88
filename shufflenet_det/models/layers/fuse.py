"""Fold BatchNorm into the preceding convolution for deployment.

Only pairs that are consecutive items of an ``nn.Sequential`` are folded: there the item order is the execution
order, so the fold is exact. The BN is replaced by ``nn.Identity`` so indices and the remaining keys keep their names.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@torch.no_grad()
def fold_bn_into_conv(conv: nn.Conv2d, bn: _BatchNorm) -> nn.Conv2d:
    """Return a new conv computing ``bn(conv(x))`` in eval mode (running statistics)."""
    if bn.running_var is None or bn.running_mean is None:
        raise ValueError(f'cannot fold {bn.__class__.__name__} without running statistics '
                         '(track_running_stats=False)')
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                      padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
                      padding_mode=conv.padding_mode).to(conv.weight.device, conv.weight.dtype)
    std = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_((bias - bn.running_mean) * scale + beta)
    return fused


def fuse_conv_bn(module: nn.Module) -> nn.Module:
    """Fold every ``Conv2d -> _BatchNorm`` pair found inside ``nn.Sequential`` containers, in place.

    Returns the module (switched to eval mode, since folded BN no longer has batch statistics).
    """
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules.keys())
        for prev, cur in zip(names[:-1], names[1:]):
            conv, bn = seq._modules[prev], seq._modules[cur]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, _BatchNorm):
                seq._modules[prev] = fold_bn_into_conv(conv, bn)
                seq._modules[cur] = nn.Identity()
    return module.eval()


def count_batchnorm(module: nn.Module) -> int:
    """Number of BatchNorm layers left in ``module`` (0 after a full fold)."""
    return sum(isinstance(m, _BatchNorm) for m in module.modules())
