"""The mmdet backbone contract, implemented once for every ShuffleNet family.

A family subclass builds its modules (:meth:`ShuffleBackboneBase._add_stem` and :meth:`~ShuffleBackboneBase._add_stages`
build the parts every family shares), then calls :meth:`ShuffleBackboneBase._set_outputs` with, for each output index
(the stride table of the project: 0 = stride 4, 1 = 8, 2 = 16, 3 = 32, 4 = last 1x1 conv at stride 32), the names of
the child modules that produce it (its *output stage*), and their channels and strides. Everything else lives here:

* ``out_indices`` validation, ``out_channels`` / ``out_strides`` (tuples in ``out_indices`` order);
* ``frozen_stages``: -1 freezes nothing, k freezes output stages 0..k (the stem and its BN included);
* the output stages after the last of ``out_indices`` (e.g. ShuffleNet V2's ``conv5`` with ``out_indices=(1, 2, 3)``)
  are built, so that ImageNet checkpoints load key for key, but never run: they are frozen the same way, so that
  distributed training needs no ``find_unused_parameters`` (DDP only tracks parameters that require grad);
* ``norm_eval``: every ``_BatchNorm`` (so SyncBN too) stays in eval mode during training;
* ``with_cp``: every block of a stage runs under activation checkpointing (same outputs and gradients);
* ``switch_to_deploy()``: folds every BN into its conv.

The contract arguments are declared once, by :meth:`ShuffleBackboneBase.__init__`. A family constructor declares its
own arguments (and the contract defaults it changes, e.g. ``out_indices``) and forwards ``**kwargs``;
:meth:`~ShuffleBackboneBase.__init_subclass__` gives it the complete signature (its own parameters, then the contract
ones as keyword-only), so ``inspect.signature`` and ``help()`` list every accepted argument.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, Optional, Sequence

import torch
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule, constant_init, kaiming_init, normal_init
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ...utils.checkpoint import run_pretrained_checks
from ..layers import conv_norm_act, fold_batchnorm
from .validation import check_cfg_type, check_frozen_stages, check_out_indices

#: Builds the units of one stage: ``(stage index, input channels, output channels) -> units``.
StageBuilder = Callable[[int, int, int], Sequence[nn.Module]]


class ShuffleBackboneBase(BaseModule):
    """Shared behaviour of the ShuffleNet-family backbones (see module docstring).

    Args:
        out_indices: output indices to return (0 = stride 4, 1 = 8, 2 = 16, 3 = 32, 4 = the last 1x1 conv where the
            family has one); unique, any order: the outputs and ``self.out_indices`` are in increasing stride
            order (what mmdet necks expect), e.g. ``(3, 1)`` gives ``out_indices == (1, 3)``.
        frozen_stages: -1 freezes nothing; k freezes output stages 0..k (parameters and BN statistics).
        conv_cfg: mmcv config of every conv (``None``: ``nn.Conv2d``).
        norm_cfg: mmcv config of every norm layer, e.g. ``dict(type='SyncBN')`` or ``dict(type='GN', num_groups=4)``.
        act_cfg: mmcv config of every activation; what ``None`` means is the family's (no activation for ShuffleNet
            V1/V2, the published activations for the searched families).
        norm_eval: keep every BatchNorm (SyncBN included) in eval mode while training.
        with_cp: activation checkpointing of each unit (same outputs and gradients, less memory).
        init_cfg: mmengine init config, e.g. ``dict(type='Pretrained', checkpoint=..., prefix='backbone.')``.
    """

    def __init__(self,
                 out_indices: Sequence[int],
                 frozen_stages: int = -1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='ReLU'),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[dict | list] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.conv_cfg = check_cfg_type('conv_cfg', conv_cfg, required=False)
        self.norm_cfg = check_cfg_type('norm_cfg', norm_cfg if norm_cfg is not None else dict(type='BN'),
                                       required=True)
        self.act_cfg = check_cfg_type('act_cfg', act_cfg, required=False)
        self._requested_out_indices = tuple(out_indices) if isinstance(out_indices, Iterable) else out_indices
        self._requested_frozen_stages = frozen_stages
        self.norm_eval = bool(norm_eval)
        self.with_cp = bool(with_cp)
        self.deployed = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give a constructor that forwards ``**kwargs`` to its parent the complete signature (see module docstring)."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get('__init__')
        if init is None:
            return
        own = list(inspect.signature(init).parameters.values())
        if not own or own[-1].kind is not inspect.Parameter.VAR_KEYWORD:
            return
        names = {p.name for p in own}
        parent = list(inspect.signature(super(cls, cls).__init__).parameters.values())[1:]  # without self
        forwarded = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in parent
                     if p.name not in names and p.kind is not inspect.Parameter.VAR_KEYWORD]
        init.__signature__ = inspect.Signature(own[:-1] + forwarded, return_annotation=None)

    # ------------------------------------------------------------------ construction helpers
    def _add_stem(self, channels: int, act_cfg: Optional[dict], with_maxpool: bool) -> None:
        """``conv1``: 3x3 stride-2 conv + norm + act; and, with ``with_maxpool``, ``maxpool`` (3x3, stride 2)."""
        self.conv1 = nn.Sequential(*conv_norm_act(3, channels, 3, stride=2, conv_cfg=self.conv_cfg,
                                                  norm_cfg=self.norm_cfg, act_cfg=act_cfg))
        if with_maxpool:
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def _add_stages(self, names: Sequence[str], in_channels: int, channels: Sequence[int],
                    build_units: StageBuilder) -> int:
        """Add one ``nn.Sequential`` of ``build_units(i, in, out)`` per stage name; return the last width."""
        for idx, (name, out_channels) in enumerate(zip(names, channels, strict=True)):
            self.add_module(name, nn.Sequential(*build_units(idx, in_channels, out_channels)))
            in_channels = out_channels
        return in_channels

    def _set_outputs(self, stage_modules: Sequence[Sequence[str]], channels: Sequence[int],
                     strides: Sequence[int]) -> None:
        """Declare, per output index, the child modules producing it (its output stage), their channels and strides.

        Must be called once by the subclass after its modules exist; it validates ``out_indices`` and
        ``frozen_stages`` against the number of outputs and applies the freezing.
        """
        if not (len(stage_modules) == len(channels) == len(strides)):
            raise RuntimeError('stage_modules, channels and strides must have one entry per output index')
        for names in stage_modules:
            for name in names:
                if not isinstance(getattr(self, name, None), nn.Module):
                    raise RuntimeError(f'{type(self).__name__} has no child module {name!r}')
        self._output_stages = [tuple(names) for names in stage_modules]
        self._all_channels = tuple(int(c) for c in channels)
        self._all_strides = tuple(int(s) for s in strides)
        self.out_indices = check_out_indices(self._requested_out_indices, len(stage_modules))
        self.frozen_stages = check_frozen_stages(self._requested_frozen_stages, len(stage_modules))
        self.out_channels = tuple(self._all_channels[i] for i in self.out_indices)
        self.out_strides = tuple(self._all_strides[i] for i in self.out_indices)
        self._freeze_stages()

    @property
    def num_outputs(self) -> int:
        """How many output indices this backbone has (4 or 5)."""
        return len(self._output_stages)

    @property
    def output_stages(self) -> tuple[tuple[str, ...], ...]:
        """Per output index, the names of the child modules that produce it (e.g. ``('conv1', 'maxpool')``)."""
        return tuple(self._output_stages)

    # ------------------------------------------------------------------ contract
    @property
    def unused_output_stages(self) -> tuple[int, ...]:
        """Output stages after the last of ``out_indices``: built (for checkpoints) but never run, kept frozen."""
        return tuple(range(max(self.out_indices) + 1, len(self._output_stages)))

    def _freeze_stages(self) -> None:
        for idx in (*range(self.frozen_stages + 1), *self.unused_output_stages):
            for name in self._output_stages[idx]:
                module = getattr(self, name)
                module.eval()
                for param in module.parameters():
                    param.requires_grad = False

    def train(self, mode: bool = True) -> ShuffleBackboneBase:
        """Set train mode, keeping frozen stages and (with ``norm_eval``) every ``_BatchNorm`` in eval mode."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def init_weights(self) -> None:
        """Pretrained weights through ``init_cfg``; otherwise He init for convs, unit BN, small normal for linear.

        Weights named ``shufflenet_det://...`` are first checked against this backbone (type, width, groups, arch,
        layout: :func:`shufflenet_det.weights.check_init_cfg`, registered as a pretrained check of
        :mod:`shufflenet_det.utils.checkpoint`), so another variant's weights are an error naming
        both instead of a partial load."""
        if self.init_cfg is not None:
            run_pretrained_checks(self)
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
        for idx, names in enumerate(self._output_stages[:last + 1]):
            for name in names:
                x = self._run_module(getattr(self, name), x)
            if idx in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def switch_to_deploy(self) -> ShuffleBackboneBase:
        """Fold every BatchNorm into its convolution, drop the output stages that never run (after the last of
        ``out_indices``: kept only so that checkpoints load) and switch to eval mode (inference only; outputs
        unchanged within float error)."""
        for idx in self.unused_output_stages:
            for name in self._output_stages[idx]:
                setattr(self, name, nn.Identity())
        fold_batchnorm(self)
        self.eval()
        self.deployed = True
        return self
