"""mmpretrain (mmcls) ShuffleNet V1 / V2 classifier checkpoints -> this project's backbones.

mmpretrain checkpoints hold ``{'meta': ..., 'state_dict': {'backbone.*', 'head.fc.*'}}``; every conv is an mmcv
``ConvModule`` (``<name>.conv`` / ``<name>.bn``). The head is dropped; a state dict without the ``backbone.`` prefix
(a backbone saved on its own) is accepted too.

ShuffleNet V2: ``conv1.{conv,bn}``, ``layers.{0,1,2}.{i}.branch1.{0,1}`` / ``branch2.{0,1,2}`` (each a ConvModule)
and ``layers.3`` = conv5. The unit is torchvision's formulation, so only keys change:
``branch1.{0,1}.{conv,bn}`` -> ``branch1.{0,1 | 2,3}``, ``branch2.{0,1,2}.{conv,bn}`` -> ``branch2.{0,1 | 3,4 | 5,6}``.

ShuffleNet V1: ``layers.{0,1,2}.{i}.{g_conv_1x1_compress, depthwise_conv3x3_bn, g_conv_1x1_expand}`` ->
``stage{2,3,4}.i.{branch_main_1.0/1, branch_main_1.3/4, branch_main_2.0/1}``. mmpretrain shuffles the ``m``
bottleneck channels with ``g`` groups (view ``(g, m/g)``, transpose), the backbone like the official code with
``m/g`` groups (view ``(m/g, g)``, transpose): the shuffled position ``p`` holds pre-shuffle channel ``src(p)`` resp.
``tgt(p)``. The channels between the two 1x1 convs pass through per-channel layers (BN, ReLU, depthwise conv), so the
converter reorders them (permutation ``Q`` on the compress conv's rows, the dw conv and both BNs) and the expand
conv's input columns so that every expand group ``k`` reads the same channels as in mmpretrain. ``Q`` must keep each
channel in its compress-conv group, so it exists iff, for every expand group ``k`` and compress group ``i``, both
shuffles send equally many channels of group ``i`` to group ``k``. That holds for groups 1, 2 and 3 at every width
(mmpretrain's released ShuffleNetV1 is groups 3, 1.0x); for groups 4 and 8 it depends on ``m / g`` (it fails e.g.
for groups 4 at 1.0x in stage 3 and for groups 8 at 1.0x), and such checkpoints are refused with an explanation.

Widths: mmpretrain rounds ``widen_factor * channels`` to multiples of 8 and uses ``int(24 * widen_factor)`` stem
channels; the backbone follows the official tables, so widths where the two differ (e.g. 1.5x stem 36 vs. 24) are
reported as a shape mismatch.
"""
from __future__ import annotations

import re
from typing import Any

import torch

from ..models.backbones.shufflenet_v1 import SHUFFLENET_V1_ARCH
from ..models.backbones.shufflenet_v2 import DEFAULT_LAYOUT, SHUFFLENET_V2_ARCH
from .core import ConversionError, register_converter
from .keymap import BN_VECTORS, rename_to_target, require_kwarg, stage_units, target_state_dict

#: Source keys that are not part of a backbone.
MMPRETRAIN_IGNORED = r'(head|neck|data_preprocessor)\..*'

#: backbone Sequential index -> mmpretrain ConvModule sub-module, per V2 branch.
V2_BRANCH_MAP = {
    'branch1': {'0': '0.conv', '1': '0.bn', '2': '1.conv', '3': '1.bn'},
    'branch2': {'0': '0.conv', '1': '0.bn', '3': '1.conv', '4': '1.bn', '5': '2.conv', '6': '2.bn'},
}
#: backbone ``<branch>.<index>`` -> mmpretrain ConvModule sub-module, V1 unit.
V1_UNIT_MAP = {
    'branch_main_1.0': 'g_conv_1x1_compress.conv', 'branch_main_1.1': 'g_conv_1x1_compress.bn',
    'branch_main_1.3': 'depthwise_conv3x3_bn.conv', 'branch_main_1.4': 'depthwise_conv3x3_bn.bn',
    'branch_main_2.0': 'g_conv_1x1_expand.conv', 'branch_main_2.1': 'g_conv_1x1_expand.bn',
}
#: stem / last conv: backbone ``<name>.<index>`` -> mmpretrain ConvModule sub-module (without ``backbone.``).
STEM_MAP = {'conv1.0': 'conv1.conv', 'conv1.1': 'conv1.bn'}
_KEY = re.compile(r'(?P<stage>stage\d)\.(?P<unit>\d+)\.(?P<module>[a-z_0-9]+\.\d+)\.(?P<param>\w+)$')


def _prefix(state_dict: dict[str, torch.Tensor]) -> str:
    return 'backbone.' if any(k.startswith('backbone.') for k in state_dict) else ''


def _mmpretrain_key(target_key: str, prefix: str, stage_names: tuple[str, ...], unit_map: dict[str, str],
                    extra: dict[str, str]) -> str:
    module, _, param = target_key.rpartition('.')
    if module in extra:
        return f'{prefix}{extra[module]}.{param}'
    match = _KEY.match(target_key)
    if match is None or match['module'] not in unit_map:
        raise ConversionError(f'no mmpretrain counterpart for backbone key {target_key!r}')
    layer = stage_names.index(match['stage'])
    return f'{prefix}layers.{layer}.{match["unit"]}.{unit_map[match["module"]]}.{match["param"]}'


@register_converter('mmpretrain', 'ShuffleNetV2')
def convert_mmpretrain_shufflenet_v2(state_dict: dict[str, torch.Tensor],
                                     backbone_kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
    """mmpretrain ShuffleNetV2 -> ShuffleNetV2: rename only (same formulation)."""
    require_kwarg(backbone_kwargs, 'layout', 'torchvision', DEFAULT_LAYOUT,
                  f'mmpretrain ShuffleNetV2 -> ShuffleNetV2({backbone_kwargs})',
                  " (mmpretrain's unit is torchvision's formulation, not the official Megvii one)")
    target = target_state_dict('ShuffleNetV2', backbone_kwargs)
    stage_names = tuple(SHUFFLENET_V2_ARCH['stage_names'])
    unit_map = {f'{b}.{i}': f'{b}.{sub}' for b, table in V2_BRANCH_MAP.items() for i, sub in table.items()}
    extra = dict(STEM_MAP, **{'conv5.0': f'layers.{len(stage_names)}.conv',
                              'conv5.1': f'layers.{len(stage_names)}.bn'})
    prefix = _prefix(state_dict)
    return rename_to_target(state_dict, target,
                            lambda k: _mmpretrain_key(k, prefix, stage_names, unit_map, extra),
                            MMPRETRAIN_IGNORED, f'mmpretrain ShuffleNetV2 -> ShuffleNetV2({backbone_kwargs})')


# ----------------------------------------------------------------------------------------------- V1 shuffle algebra
def shuffle_sources(channels: int, shuffle_groups: int) -> list[int]:
    """Pre-shuffle channel at each position after ``channel_shuffle(x, shuffle_groups)`` (view ``(g, c/g)``, T)."""
    per = channels // shuffle_groups
    return [i * per + j for j in range(per) for i in range(shuffle_groups)]


def regroup_shuffle(mid: int, groups: int, first_groups: int, src_shuffle_groups: int,
                    tgt_shuffle_groups: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``Q`` and, per expand group, the expand conv's source columns (see module docstring).

    Returns ``(q, cols)``: target bottleneck channel ``c`` takes source channel ``q[c]``; expand group ``k``'s target
    input column ``t`` takes source column ``cols[k][t]``.
    """
    per_expand, per_compress = mid // groups, mid // first_groups
    src, tgt = shuffle_sources(mid, src_shuffle_groups), shuffle_sources(mid, tgt_shuffle_groups)
    src_position = {c: p for p, c in enumerate(src)}
    q = torch.empty(mid, dtype=torch.long)
    for k in range(groups):
        block = range(k * per_expand, (k + 1) * per_expand)
        for i in range(first_groups):
            tgt_ch = [tgt[p] for p in block if tgt[p] // per_compress == i]
            src_ch = [src[p] for p in block if src[p] // per_compress == i]
            if len(tgt_ch) != len(src_ch):
                raise ConversionError(
                    f'mmpretrain ShuffleNetV1 with groups={groups} and {mid} bottleneck channels: its channel '
                    f'shuffle sends {len(src_ch)} channels of 1x1-conv group {i} to group {k}, the backbone\'s '
                    f'(official) shuffle {len(tgt_ch)}; no channel reordering makes the two networks equal')
            q[torch.tensor(tgt_ch, dtype=torch.long)] = torch.tensor(src_ch, dtype=torch.long)
    cols = [torch.tensor([src_position[int(q[tgt[p]])] - k * per_expand
                          for p in range(k * per_expand, (k + 1) * per_expand)], dtype=torch.long)
            for k in range(groups)]
    return q, cols


def _apply_regroup(sd: dict[str, torch.Tensor], unit: str, q: torch.Tensor, cols: list[torch.Tensor]) -> None:
    for conv, bn in ((f'{unit}.branch_main_1.0', f'{unit}.branch_main_1.1'),
                     (f'{unit}.branch_main_1.3', f'{unit}.branch_main_1.4')):
        sd[f'{conv}.weight'] = sd[f'{conv}.weight'][q].contiguous()
        for name in BN_VECTORS:
            sd[f'{bn}.{name}'] = sd[f'{bn}.{name}'][q].contiguous()
    key = f'{unit}.branch_main_2.0.weight'
    weight = sd[key]
    rows = weight.shape[0] // len(cols)
    sd[key] = torch.cat([weight[k * rows:(k + 1) * rows][:, c] for k, c in enumerate(cols)], dim=0).contiguous()


@register_converter('mmpretrain', 'ShuffleNetV1')
def convert_mmpretrain_shufflenet_v1(state_dict: dict[str, torch.Tensor],
                                     backbone_kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
    """mmpretrain ShuffleNetV1 -> ShuffleNetV1: rename, then reorder bottleneck channels (module docstring)."""
    target = target_state_dict('ShuffleNetV1', backbone_kwargs)
    stage_names = tuple(SHUFFLENET_V1_ARCH['stage_names'])
    prefix = _prefix(state_dict)
    sd = rename_to_target(state_dict, target, lambda k: _mmpretrain_key(k, prefix, stage_names, V1_UNIT_MAP,
                                                                         STEM_MAP),
                          MMPRETRAIN_IGNORED, f'mmpretrain ShuffleNetV1 -> ShuffleNetV1({backbone_kwargs})')
    units = stage_units(target, stage_names)
    in_channels = _unit_inputs(target, units)
    for stage in units:
        for unit in stage:
            compress = target[f'{unit}.branch_main_1.0.weight']
            expand = target[f'{unit}.branch_main_2.0.weight']
            mid, per_expand = compress.shape[0], expand.shape[1]
            groups = mid // per_expand
            if groups == 1:
                continue  # no shuffle in either network
            first_groups = in_channels[unit] // compress.shape[1]
            q, cols = regroup_shuffle(mid, groups, first_groups, src_shuffle_groups=groups,
                                      tgt_shuffle_groups=mid // groups)
            _apply_regroup(sd, unit, q, cols)
    return sd


def _unit_inputs(target: dict[str, torch.Tensor], units: list[list[str]]) -> dict[str, int]:
    """Input channels of every V1 unit, read from the target shapes (the first unit of a stage has stride 2 and
    concatenates its input to the main branch's output)."""
    channels = target['conv1.0.weight'].shape[0]
    result = {}
    for stage in units:
        for i, unit in enumerate(stage):
            result[unit] = channels
            main_out = target[f'{unit}.branch_main_2.0.weight'].shape[0]
            channels = main_out + channels if i == 0 else main_out
    return result
