"""The mmdet backbone contract, implemented once for every ShuffleNet family.

A family subclass builds its modules, then calls :meth:`ShuffleBackboneBase._set_outputs` with, for each output index
(the stride table of the project: 0 = stride 4, 1 = 8, 2 = 16, 3 = 32, 4 = last 1x1 conv at stride 32), the names of
the child modules that produce it, and their channels and strides. Everything else lives here:

* ``out_indices`` validation, ``out_channels`` / ``out_strides`` (tuples in ``out_indices`` order);
* ``frozen_stages``: -1 freezes nothing, k freezes output groups 0..k (the stem and its BN included);
* the groups after the last of ``out_indices`` (e.g. ShuffleNet V2's ``conv5`` with ``out_indices=(1, 2, 3)``) are
  built, so that ImageNet checkpoints load key for key, but never run: they are frozen the same way, so that
  distributed training needs no ``find_unused_parameters`` (DDP only tracks parameters that require grad);
* ``norm_eval``: every ``_BatchNorm`` (so SyncBN too) stays in eval mode during training;
* ``with_cp``: every block of a stage runs under activation checkpointing (same outputs and gradients);
* ``switch_to_deploy()``: folds every BN into its conv.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence

import torch
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule, constant_init, kaiming_init, normal_init
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..layers.fuse import fuse_conv_bn
from .validation import check_cfg_type, check_frozen_stages, check_out_indices


class ShuffleBackboneBase(BaseModule):
    """Shared behaviour of the ShuffleNet-family backbones (see module docstring)."""

    def __init__(self,
                 out_indices: Sequence[int],
                 frozen_stages: int = -1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = None,
                 act_cfg: Optional[dict] = None,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[dict | list] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.conv_cfg = conv_cfg
        self.norm_cfg = check_cfg_type('norm_cfg', norm_cfg if norm_cfg is not None else dict(type='BN'),
                                       required=True)
        self.act_cfg = check_cfg_type('act_cfg', act_cfg, required=False)
        check_cfg_type('conv_cfg', conv_cfg, required=False)
        self._requested_out_indices = tuple(out_indices) if isinstance(out_indices, Iterable) else out_indices
        self._requested_frozen_stages = frozen_stages
        self.norm_eval = bool(norm_eval)
        self.with_cp = bool(with_cp)
        self.deployed = False

    # ------------------------------------------------------------------ construction helpers
    def _set_outputs(self, groups: Sequence[Sequence[str]], channels: Sequence[int],
                     strides: Sequence[int]) -> None:
        """Declare, per output index, the child modules producing it and their channels and strides.

        Must be called once by the subclass after its modules exist; it validates ``out_indices`` and
        ``frozen_stages`` against the number of outputs and applies the freezing.
        """
        if not (len(groups) == len(channels) == len(strides)):
            raise RuntimeError('groups, channels and strides must have one entry per output index')
        for group in groups:
            for name in group:
                if not isinstance(getattr(self, name, None), nn.Module):
                    raise RuntimeError(f'{type(self).__name__} has no child module {name!r}')
        self._groups = [tuple(g) for g in groups]
        self._all_channels = tuple(int(c) for c in channels)
        self._all_strides = tuple(int(s) for s in strides)
        self.out_indices = check_out_indices(self._requested_out_indices, len(groups))
        self.frozen_stages = check_frozen_stages(self._requested_frozen_stages, len(groups))
        self.out_channels = tuple(self._all_channels[i] for i in self.out_indices)
        self.out_strides = tuple(self._all_strides[i] for i in self.out_indices)
        self._freeze_stages()

    @property
    def num_outputs(self) -> int:
        """How many output indices this backbone has (4 or 5)."""
        return len(self._groups)

    # ------------------------------------------------------------------ contract
    @property
    def unused_groups(self) -> tuple[int, ...]:
        """Output groups after the last of ``out_indices``: built (for checkpoints) but never run, kept frozen."""
        return tuple(range(max(self.out_indices) + 1, len(self._groups)))

    def _freeze_stages(self) -> None:
        for idx in (*range(self.frozen_stages + 1), *self.unused_groups):
            for name in self._groups[idx]:
                module = getattr(self, name)
                module.eval()
                for param in module.parameters():
                    param.requires_grad = False

    def train(self, mode: bool = True) -> 'ShuffleBackboneBase':
        """Set train mode, keeping frozen stages and (with ``norm_eval``) every ``_BatchNorm`` in eval mode."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def init_weights(self) -> None:
        """Pretrained weights through ``init_cfg``; otherwise He init for convs, unit BN, small normal for linear."""
        if self.init_cfg is not None:
            super().init_weights()
            return
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                kaiming_init(m, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, (_BatchNorm, nn.GroupNorm)):
                constant_init(m, 1.0, bias=0.0)
            elif isinstance(m, nn.Linear):
                normal_init(m, std=0.01)
        self._is_init = True

    def _run_module(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        use_cp = self.with_cp and self.training and x.requires_grad
        if use_cp and isinstance(module, nn.Sequential):
            for block in module:
                x = cp.checkpoint(block, x, use_reentrant=False)
            return x
        if use_cp:
            return cp.checkpoint(module, x, use_reentrant=False)
        return module(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Return the feature maps of ``out_indices`` (computation stops at the last requested output)."""
        outs = []
        last = max(self.out_indices)
        for idx, group in enumerate(self._groups[:last + 1]):
            for name in group:
                x = self._run_module(getattr(self, name), x)
            if idx in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def switch_to_deploy(self) -> 'ShuffleBackboneBase':
        """Fold every BatchNorm into its convolution (inference only; outputs unchanged within float error)."""
        fuse_conv_bn(self)
        self.deployed = True
        return self
