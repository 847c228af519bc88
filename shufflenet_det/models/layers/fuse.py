"""Fold BatchNorm into the preceding convolution for deployment, with mmcv's ``fuse_conv_bn``.

mmcv (2.1.0) walks the children of every module in registration order and folds each ``_BatchNorm`` into the last
``nn.Conv2d`` registered before it among its siblings, replacing the BN by ``nn.Identity`` (so indices and the other
keys keep their names). That is exact only where registration order is execution order and nothing but the BN sits
between the conv and its BN. It is in this package: every BN is registered right after the conv that feeds it,
inside an ``nn.Sequential`` (:func:`~shufflenet_det.models.layers.conv_norm_act` lays out ``[conv, norm, act]``, the
squeeze-excitation's ``attention`` likewise), and the backbone contract tests check the folded outputs of every family
against the unfolded ones.

What is left here is what mmcv cannot fold: a BN without affine parameters (``affine=False``; mmcv multiplies by
``bn.weight``) first gets unit scale and zero shift, which is the same function; a BN without running statistics
(``track_running_stats=False``) normalizes with batch statistics even in eval mode, so no conv can replace it and
:func:`fold_batchnorm` refuses it.
"""
from __future__ import annotations

import torch
from mmcv.cnn import fuse_conv_bn
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@torch.no_grad()
def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every BN of ``module`` into the conv before it, in place (mmcv's ``fuse_conv_bn``, see module docstring).

    Raises ``ValueError`` naming the first BN without running statistics (nothing is changed then).
    """
    norms = [(name, m) for name, m in module.named_modules() if isinstance(m, _BatchNorm)]
    for name, bn in norms:
        if bn.running_mean is None or bn.running_var is None:
            raise ValueError(f'cannot fold {name or type(module).__name__} ({type(bn).__name__} with '
                             'track_running_stats=False normalizes with batch statistics)')
    for _, bn in norms:
        if bn.weight is None:  # affine=False: the identity affine transform, so mmcv's formula applies
            ref = bn.running_var
            bn.weight = nn.Parameter(torch.ones_like(ref), requires_grad=False)
            bn.bias = nn.Parameter(torch.zeros_like(ref), requires_grad=False)
    return fuse_conv_bn(module)


def count_batchnorm(module: nn.Module) -> int:
    """Number of BatchNorm layers left in ``module`` (0 after a full fold)."""
    return sum(isinstance(m, _BatchNorm) for m in module.modules())
