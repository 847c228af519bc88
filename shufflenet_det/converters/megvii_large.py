"""Megvii ShuffleNet-Series ShuffleNetV2.Large / ShuffleNetV2.ExLarge checkpoints -> ``ShuffleNetV2Large``.

Registered as ``('megvii', 'ShuffleNetV2Large')``::

    python tools/model_converters/convert_weights.py --src megvii --type ShuffleNetV2Large --arch Large IN OUT

Official checkpoints are ``{'state_dict': {'module.<key>': tensor}}`` (DataParallel; the registry removes the
prefix) with the keys of the official ``network.py`` (every ``Conv_BN_ReLU`` is ``<name>.conv`` + ``<name>.bn``):

* ``first_conv.{0,1,2}`` -> ``conv1`` (flat ``[conv, bn, act]`` triples: ``conv1.{0,3,6}`` / ``conv1.{1,4,7}``);
* a unit: Large ``features.S.{S+2}{a,b,...}`` (e.g. ``features.2.4w`` is the 23rd unit of stage 3), ExLarge
  ``features.S.J``; its ``proj``, ``branch_main.K``, ``down`` (Large) -> ``stageN.J.branch_proj`` /
  ``branch_main`` (the K-th conv and the norm after it) / ``down``; the SE's ``se_fc1`` / ``se_fc2`` (Large
  ``nn.Linear``, ExLarge ``FC`` with ``.fc``) -> the SE's 1x1 convs ``branch_main.<last>.attention.{1,3}`` (weights
  reshaped to ``(out, in, 1, 1)``). ``se_block.0`` / ``se_block.2`` hold the same layers under a second name (the
  official SE is registered twice): they are accepted as aliases and must be equal to ``se_fc1`` / ``se_fc2``;
* ExLarge's stage-closing ``features.S.<repeats>`` -> ``stageN.<repeats>``; Large's ``conv_last`` -> ``conv_last``;
* dropped and reported: the classifier (Large ``fc.*``, ExLarge ``fc.fc.*``) and the training-only auxiliary
  classifiers ``predict_56`` / ``predict_28`` / ``predict_14``. Any other key, a missing key or a shape that does not
  fit the requested ``--arch`` is a :class:`~shufflenet_det.converters.core.ConversionError`.

The backbone routes channels exactly as the official code does (even / odd halves), so nothing is permuted: the
converted backbone's stage outputs and last output equal the official network's (the BN eps of ``norm_cfg=None`` is
the official one).
"""
from __future__ import annotations

import re
from typing import Any, Sequence, cast

import torch
from mmengine.logging import print_log
from torch import nn

from ..models.backbones.shufflenet_v2_large import STAGE_NAMES, ShuffleNetV2Large
from .core import ConversionError, register_converter, target_backbone

#: Official keys that are not part of the backbone, per base layout: the ImageNet classifier and the training-only
#: auxiliary classifiers at strides 4/8/16.
CLASSIFIER_KEYS = {'Large': r'fc\.(weight|bias)', 'ExLarge': r'fc\.fc\.(weight|bias)'}
AUX_KEYS = r'predict_(56|28|14)\..+'
#: ``<unit>.se_block.{0,2}[.fc].<param>``: second names of ``se_fc1`` / ``se_fc2``.
_SE_ALIAS = re.compile(r'(.+)\.se_block\.([02])\.((?:fc\.)?(?:weight|bias))')


def official_unit(base: str, stage: int, unit: int) -> str:
    """Official module name of unit ``unit`` (0-based) of stage ``stage`` (0-based)."""
    if base == 'Large':
        return f'features.{stage}.{stage + 2}{chr(ord("a") + unit)}'
    return f'features.{stage}.{unit}'


def official_module_names(model: ShuffleNetV2Large) -> dict[str, str]:
    """Our module name -> official module name, for every conv, norm and SE layer of a ``ShuffleNetV2Large``."""
    spec = model.arch
    names: dict[str, str] = {}

    def conv_norm(ours: str, seq: nn.Sequential, theirs: Sequence[str]) -> None:
        children = list(seq.named_children())
        convs = [i for i, (_, m) in enumerate(children) if isinstance(m, nn.Conv2d)]
        if len(convs) != len(theirs):
            raise ConversionError(f'internal error: {ours} has {len(convs)} convs, expected {len(theirs)}')
        for i, official in zip(convs, theirs):
            names[f'{ours}.{children[i][0]}'] = f'{official}.conv'
            names[f'{ours}.{children[i + 1][0]}'] = f'{official}.bn'

    linear = '.fc' if spec.base == 'ExLarge' else ''
    main_convs = 4 if spec.main_depthwise else 3
    conv_norm('conv1', model.conv1, [f'first_conv.{j}' for j in range(3)])
    for s, stage_name in enumerate(STAGE_NAMES):
        stage = getattr(model, stage_name)
        for j in range(spec.repeats[s]):
            unit, ours, theirs = stage[j], f'{stage_name}.{j}', official_unit(spec.base, s, j)
            if unit.first:
                conv_norm(f'{ours}.branch_proj', unit.branch_proj, [f'{theirs}.proj'])
            conv_norm(f'{ours}.branch_main', unit.branch_main, [f'{theirs}.branch_main.{k}' for k in range(main_convs)])
            se = f'{ours}.branch_main.{len(unit.branch_main) - 1}.attention'
            names[f'{se}.1'], names[f'{se}.3'] = f'{theirs}.se_fc1{linear}', f'{theirs}.se_fc2{linear}'
            if unit.with_down:
                conv_norm(f'{ours}.down', unit.down, [f'{theirs}.down'])
        if spec.stage_conv:
            last = spec.repeats[s]
            conv_norm(f'{stage_name}.{last}', stage[last], [f'features.{s}.{last}'])
    if spec.last_channels is not None:
        conv_norm('conv_last', model.conv_last, ['conv_last'])
    return names


def _resolve_se_aliases(src: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``se_block.{0,2}`` keys folded into ``se_fc1`` / ``se_fc2`` (they must agree where both are present)."""
    out = dict(src)
    for key, match in [(k, m) for k in src if (m := _SE_ALIAS.fullmatch(k)) is not None]:
        primary = f'{match[1]}.se_fc{1 if match[2] == "0" else 2}.{match[3]}'
        value = out.pop(key)
        if primary not in out:
            out[primary] = value
        elif out[primary].shape != value.shape or not torch.equal(out[primary], value):
            raise ConversionError(f'megvii ShuffleNetV2Large: {key!r} and {primary!r} name the same official layer but '
                                  'hold different tensors: the checkpoint is inconsistent')
    return out


def _summary(keys: Sequence[str]) -> str:
    groups: dict[str, int] = {}
    for key in keys:
        head = key.split('.', 1)[0]
        groups[head] = groups.get(head, 0) + 1
    return ', '.join(f'{head}.* ({n})' for head, n in groups.items())


@register_converter('megvii', 'ShuffleNetV2Large')
def convert_megvii_shufflenet_v2_large(state_dict: dict[str, torch.Tensor],
                                       backbone_kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Official ShuffleNetV2.Large / ExLarge state dict -> ``ShuffleNetV2Large(**backbone_kwargs)`` state dict."""
    model = cast(ShuffleNetV2Large, target_backbone('ShuffleNetV2Large', backbone_kwargs))  # built from that type
    spec = model.arch
    arch = backbone_kwargs.get('arch', 'Large')
    src = _resolve_se_aliases(state_dict)
    not_backbone = re.compile(f'{CLASSIFIER_KEYS[spec.base]}|{AUX_KEYS}')
    dropped = sorted(k for k in src if not_backbone.fullmatch(k))
    modules = official_module_names(model)
    target = model.state_dict()
    official = {}  # our key -> official key
    for key in target:
        module, _, param = key.rpartition('.')
        official[key] = f'{modules[module]}.{param}'
    missing = [theirs for key, theirs in official.items()
               if theirs not in src and not key.endswith('.num_batches_tracked')]
    unexpected = sorted(set(src) - set(official.values()) - set(dropped))
    if missing or unexpected:
        raise ConversionError(
            f'megvii ShuffleNetV2Large checkpoint does not match arch={arch!r}: {len(missing)} expected official keys '
            f'missing {missing[:6]}, {len(unexpected)} unknown keys {unexpected[:6]} (wrong --type or --arch?)')
    out: dict[str, torch.Tensor] = {}
    for key, ref in target.items():
        theirs = official[key]
        if theirs not in src:  # a BN counter: checkpoints saved before torch 0.4.1 have none
            out[key] = torch.zeros_like(ref)
            continue
        value = src[theirs]
        if value.dim() == 2 and ref.dim() == 4 and ref.shape[2:] == (1, 1):  # official linear -> our 1x1 conv
            value = value[:, :, None, None]
        if tuple(value.shape) != tuple(ref.shape):
            raise ConversionError(f'megvii ShuffleNetV2Large: {theirs!r} has shape {tuple(src[theirs].shape)}, '
                                  f'expected {tuple(ref.shape)} for arch={arch!r} (wrong --arch?)')
        out[key] = value.detach().clone().to(ref.dtype) if value.is_floating_point() else value.clone()
    if dropped:
        print_log(f'megvii ShuffleNetV2Large (arch={arch!r}): dropped {len(dropped)} keys that are not part of the '
                  f'backbone (ImageNet classifier and training-only auxiliary classifiers): {_summary(dropped)}',
                  logger='current')
    return out
