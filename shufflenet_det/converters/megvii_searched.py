"""Megvii ShuffleNet-Series checkpoints of DetNAS, ShuffleNetV2+ and OneShot -> this project's backbones.

Registered as ``('megvii', 'DetNAS')``, ``('megvii', 'ShuffleNetV2Plus')`` and ``('megvii', 'OneShot')``, so
``tools/model_converters/convert_weights.py --src megvii --type DetNAS --arch COCO-FPN-300M`` (etc.) picks them up.

Official layouts (``module.`` prefix from DataParallel, removed by the converter registry):

* ShuffleNetV2+ / OneShot: ``first_conv.{0,1}``, ``features.N.branch_main.K`` (SE: ``...K.SE_opr.{1,2,4}``),
  ``features.N.branch_proj.K``, ``conv_last.{0,1}``; head ``LastSE``, ``fc``, ``classifier`` (dropped).
* DetNAS: ``first_conv.{conv,bn}`` and ``last_conv.{conv,bn}`` (convs with bias), ``features.N.conv.A.<name>`` with
  ``<name>`` = ``interstellar{P}_branch2{a,b,c}[_s[_bn]]`` / ``bn{P}_branch2{a,b,c}`` where ``P`` = stage digit +
  unit letter + ``_`` + block name (e.g. ``1a_shufflenet_7x7``), ``features.N.proj_conv.<name>`` with
  ``P = 1a_proj``; head ``fc.fc`` (dropped). The block names inside the keys are checked against ``--arch``.

Function preserved (see :mod:`shufflenet_det.models.backbones.spos_blocks`): every unit here ends with the
de-interleave ``D`` (``D(z) = z[:, d]``, ``d = [0, 2, 4, ..., 1, 3, 5, ...]``), so each unit and stage output equals
``D`` of the official one while all official weights are reused unchanged, except for the layers that read a stage
output: the first layer of both branches of stages 2-4's stride-2 unit and ``conv_last`` get their *input* channels
permuted by ``d`` (a 1x1 conv: weight columns ``W[:, d]``; a depthwise conv: its filters and the following BN
``[d]``, then the next pointwise conv's columns ``[:, d]``). Stage 1's input is the stem, which is not permuted.
So ``conv_last`` output equals the official one and stage output ``k`` equals ``official[:, d]``.

The DetNAS stem and last conv have a bias in front of their BN; ``BN(conv(x) + b)`` equals ``BN'(conv(x))`` with
``running_mean' = running_mean - b`` (in training mode the batch mean absorbs it too), so the bias is folded into the
running mean.
"""
from __future__ import annotations

import inspect
import re
from typing import Any, Callable

import torch

from .core import ConversionError, register_converter, target_backbone

#: Official head keys (ImageNet classifier), not part of the backbone.
HEAD_PREFIXES: dict[str, tuple[str, ...]] = {
    'DetNAS': ('fc.',),
    'ShuffleNetV2Plus': ('LastSE.', 'fc.', 'classifier.'),
    'OneShot': ('classifier.',),
}
_BN_KEYS = ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')


def deinterleave_index(channels: int) -> torch.Tensor:
    """``d`` with ``D(z) = z[:, d]`` (same as ``spos_blocks.deinterleave_index``; kept here to stay import-light)."""
    half = torch.arange(channels // 2)
    return torch.cat((2 * half, 2 * half + 1))


# ------------------------------------------------------------------ key maps (ours -> official)
def _detnas_block_names(stage: int, unit: int, choice: str) -> tuple[dict[int, str], dict[int, str]]:
    """Official sub-layer paths of one DetNAS unit, keyed by our ``branch_main`` / ``branch_proj`` index."""
    prefix = f'{stage + 1}{chr(ord("a") + unit)}'
    p = f'{prefix}_{choice}'
    if choice == 'xception_3x3':
        main = {}
        for part, (a, letter) in enumerate(((0, 'a'), (1, 'b'), (2, 'c'))):
            name = f'{p}_branch2{letter}'
            base = 5 * part
            main.update({base: f'conv.{a}.interstellar{name}_s', base + 1: f'conv.{a}.interstellar{name}_s_bn',
                         base + 2: f'conv.{a}.interstellar{name}', base + 3: f'conv.{a}.bn{name}'})
    else:
        main = {0: f'conv.0.interstellar{p}_branch2a', 1: f'conv.0.bn{p}_branch2a',
                3: f'conv.1.interstellar{p}_branch2b_s', 4: f'conv.1.interstellar{p}_branch2b_s_bn',
                5: f'conv.1.interstellar{p}_branch2b', 6: f'conv.1.bn{p}_branch2b'}
    q = f'{prefix}_proj'
    proj = {0: f'proj_conv.interstellar{q}_s', 1: f'proj_conv.interstellar{q}_s_bn', 2: f'proj_conv.interstellar{q}',
            3: f'proj_conv.bn{q}'}
    return main, proj


_UNIT_KEY = re.compile(r'^stage(\d)\.(\d+)\.(branch_main|branch_proj)\.(\d+)\.(.+)$')


def _official_key(family: str, key: str, model: Any) -> str:
    """The official state-dict key holding our ``key`` (raises ConversionError for an unexpected layout)."""
    detnas = family == 'DetNAS'
    for ours, theirs in (('conv1.0.', 'first_conv.conv.' if detnas else 'first_conv.0.'),
                         ('conv1.1.', 'first_conv.bn.' if detnas else 'first_conv.1.'),
                         ('conv_last.0.', 'last_conv.conv.' if detnas else 'conv_last.0.'),
                         ('conv_last.1.', 'last_conv.bn.' if detnas else 'conv_last.1.')):
        if key.startswith(ours):
            return theirs + key[len(ours):]
    match = _UNIT_KEY.match(key)
    if match is None:
        raise ConversionError(f'{family}: no official counterpart known for backbone key {key!r}')
    stage, unit, branch, index, rest = int(match[1]) - 1, int(match[2]), match[3], int(match[4]), match[5]
    arch = model.arch
    global_unit = sum(arch.repeats[:stage]) + unit
    if detnas:
        main, proj = _detnas_block_names(stage, unit, arch.choices[global_unit])
        table = main if branch == 'branch_main' else proj
        if index not in table:
            raise ConversionError(f'DetNAS: backbone key {key!r} has no official counterpart')
        return f'features.{global_unit}.{table[index]}.{rest}'
    rest = rest.replace('attention.', 'SE_opr.', 1) if rest.startswith('attention.') else rest
    return f'features.{global_unit}.{branch}.{index}.{rest}'


# ------------------------------------------------------------------ permutation of stage-output readers
def _permute_input(sd: dict[str, torch.Tensor], seq: str, depthwise_first: bool, perm: torch.Tensor) -> None:
    """Permute the input channels of the layer at ``seq + '.0'`` (see module docstring)."""
    if depthwise_first:
        sd[f'{seq}.0.weight'] = sd[f'{seq}.0.weight'][perm]
        for name in _BN_KEYS[:4]:
            sd[f'{seq}.1.{name}'] = sd[f'{seq}.1.{name}'][perm]
        sd[f'{seq}.2.weight'] = sd[f'{seq}.2.weight'][:, perm]
    else:
        sd[f'{seq}.0.weight'] = sd[f'{seq}.0.weight'][:, perm]


def _apply_deinterleave(sd: dict[str, torch.Tensor], model: Any) -> None:
    arch = model.arch
    for stage in range(1, len(arch.repeats)):
        perm = deinterleave_index(arch.stage_channels[stage - 1])
        unit = sum(arch.repeats[:stage])
        prefix = f'stage{stage + 1}.0'
        _permute_input(sd, f'{prefix}.branch_proj', True, perm)
        _permute_input(sd, f'{prefix}.branch_main', arch.choices[unit] == 'xception_3x3', perm)
    sd['conv_last.0.weight'] = sd['conv_last.0.weight'][:, deinterleave_index(arch.stage_channels[-1])]


# ------------------------------------------------------------------ converters
def _convert(family: str, src: dict[str, torch.Tensor], backbone_kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The official ``family`` state dict ``src`` (no ``module.`` prefix) as a state dict of our backbone."""
    model = target_backbone(family, backbone_kwargs)
    target = model.state_dict()
    head = HEAD_PREFIXES[family]
    used, missing, out = set(), [], {}
    for key, ref in target.items():
        theirs = _official_key(family, key, model)
        if theirs in src:
            out[key] = src[theirs].detach().clone()
            used.add(theirs)
        elif key.endswith('num_batches_tracked'):
            out[key] = torch.zeros_like(ref)  # checkpoints saved before torch 0.4.1 have no counter
        else:
            missing.append(theirs)
    if family == 'DetNAS':
        used |= {'first_conv.conv.bias', 'last_conv.conv.bias'} & set(src)  # folded into the BN below
    unexpected = sorted(k for k in set(src) - used if not k.startswith(head))
    if missing or unexpected:
        arch = backbone_kwargs.get('arch', inspect.signature(type(model)).parameters['arch'].default)
        raise ConversionError(
            f'megvii {family} checkpoint does not match arch={arch!r}: {len(missing)} expected official keys '
            f'missing {missing[:6]}, {len(unexpected)} unexpected keys {unexpected[:6]} (wrong --type or --arch?)')
    for key, ref in target.items():
        if tuple(out[key].shape) != tuple(ref.shape):
            raise ConversionError(f'megvii {family}: {_official_key(family, key, model)} has shape '
                                  f'{tuple(out[key].shape)}, expected {tuple(ref.shape)} for arch='
                                  f'{backbone_kwargs.get("arch")!r} (wrong --arch?)')
    if family == 'DetNAS':
        for ours, theirs in (('conv1.1', 'first_conv.conv.bias'), ('conv_last.1', 'last_conv.conv.bias')):
            if theirs in src:
                out[f'{ours}.running_mean'] = out[f'{ours}.running_mean'] - src[theirs]
    _apply_deinterleave(out, model)
    return out


def _register(family: str) -> Callable:
    def convert(state_dict: dict[str, torch.Tensor], backbone_kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
        return _convert(family, state_dict, backbone_kwargs)

    convert.__name__ = f'convert_megvii_{family.lower()}'
    convert.__doc__ = f'Official megvii-model/ShuffleNet-Series {family} state dict -> ``{family}`` backbone.'
    return register_converter('megvii', family)(convert)


convert_megvii_detnas = _register('DetNAS')
convert_megvii_shufflenet_v2_plus = _register('ShuffleNetV2Plus')
convert_megvii_oneshot = _register('OneShot')
