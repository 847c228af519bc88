"""Megvii ShuffleNet-Series (official) ShuffleNet V1 / V2 checkpoints -> this project's backbones.

Official checkpoints are ``{'state_dict': {'module.<key>': tensor}}`` (saved from ``DataParallel``; the converter
registry removes the prefix) with the keys ``first_conv.{0,1}``, ``features.N.*`` (every unit of every stage numbered
in one sequence), ``conv_last.{0,1}`` (V2 only) and ``classifier.0.weight`` (dropped).

ShuffleNet V1 (:class:`~shufflenet_det.models.backbones.shufflenet_v1.ShuffleNetV1`) mirrors the official units,
including their channel shuffle (view ``(c/g, g)``, transpose), so ``first_conv -> conv1`` and ``features.N ->
stage{2,3,4}.i`` is the whole conversion.

ShuffleNet V2 (:class:`~shufflenet_det.models.backbones.shufflenet_v2.ShuffleNetV2`) depends on its ``layout``:

* ``layout='megvii'`` builds the official formulation with torchvision's module names, so the conversion is renaming
  only (``first_conv -> conv1``, ``features.N.branch_proj/branch_main -> stage{2,3,4}.i.branch1/branch2``,
  ``conv_last -> conv5``) at every width (0.5x, 1.0x, 1.5x, 2.0x), and every stage output equals the official one;
* ``layout='torchvision'`` (the backbone default) routes channels differently; the official 0.5x converts onto it
  through the channel permutations below, other widths are refused (see the limitation at the end).

The torchvision-layout path: both units have the same branches (``branch_proj`` /
``branch1`` = dw 3x3 + BN, pw 1x1 + BN + ReLU; ``branch_main`` / ``branch2`` = pw + BN + ReLU, dw + BN, pw + BN + ReLU,
with identical Sequential indices); only the wiring differs. With ``h`` = half the unit's output channels:

* official stride 1: keep the even input channels, run ``branch_main`` on the odd ones, ``cat(even, main)``;
  an input channel at even position ``p`` moves to ``p / 2``, the new channels fill ``h .. 2h-1``;
* torchvision stride 1: keep the first half, run ``branch2`` on the second half, ``shuffle2(cat(kept, new))``;
  an input channel at position ``q < h`` moves to ``2q``, new channel ``j`` lands at ``2j + 1``;
* stride 2: official ``cat(proj, main)`` (positions ``j`` and ``h + j``); torchvision ``shuffle2(cat(b1, b2))``
  (positions ``2j`` and ``2j + 1``).

Permutation algebra. Track, for the activation entering each unit, the permutation ``pi`` with
``t[:, q] = m[:, pi[q]]`` (``t`` backbone, ``m`` official; ``pi`` = identity after the stem). A stride-1 unit computes
the official function iff the channels it keeps are the same: ``pi[q]`` is even exactly when ``q < h``. Then

* stride 1: ``branch2.0`` input columns ``W[:, j] <- W_off[:, (pi[h + j] - 1) / 2]``; ``branch2.5`` rows and the
  ``branch2.6`` BN vectors ``<- [beta]``; outgoing ``pi'[2q] = pi[q] / 2`` (q < h), ``pi'[2j + 1] = h + beta[j]``;
* stride 2: ``branch1.0`` (depthwise) rows and ``branch1.1`` BN ``<- [pi]``; ``branch1.2`` columns ``<- [:, pi]``
  and rows + ``branch1.3`` BN ``<- [alpha]``; ``branch2.0`` columns ``<- [:, pi]``; ``branch2.5`` rows +
  ``branch2.6`` BN ``<- [beta]``; outgoing ``pi'[2j] = alpha[j]``, ``pi'[2j + 1] = h + beta[j]``;
* ``conv5.0`` input columns ``<- [:, pi]`` of the last stage, so conv5 equals the official ``conv_last`` exactly.

``alpha`` / ``beta`` (the order of each branch's new channels, free because the last pw conv and its BN can be
permuted) are chosen so the parity condition holds at every later unit of the stage: a channel created at official
position ``p`` is kept by the next ``k`` stride-1 units iff ``2^k`` divides ``p``; one created at backbone position
``q`` iff ``q * 2^(k-1) < h``. For every ``k`` both formulations have the same number of new positions kept at least
``k`` times (e.g. among ``h .. 2h-1`` the multiples of ``2^k`` vs. among odd ``q`` those below ``h / 2^(k-1)``), so
pairing new channels in order of their survival count (capped by the units left in the stage) makes the kept sets
coincide everywhere. The converted backbone's stage outputs equal the official ones up to the fixed permutation
:func:`megvii_v2_stage_permutations` returns, and ``conv5`` equals exactly.

Limitation of the torchvision layout (checked, with an explanation): an official stride-2 unit's projection branch
outputs as many channels as its input has, the main branch the rest. Stages 3 and 4 double the channels, so both
halves are ``h``, as in torchvision. Stage 2 starts from the 24-channel stem: only 0.5x (48 channels) splits 24 + 24;
the official 1.0x / 1.5x / 2.0x split 24 + 92 / 24 + 152 / 24 + 220, which a torchvision-formulation unit (``h + h``)
cannot compute, so those checkpoints are refused for ``layout='torchvision'`` (the message points to
``layout='megvii'``, i.e. ``--cfg-options layout=megvii`` in ``tools/model_converters/convert_weights.py``) instead
of being converted into a different network.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from ..models.backbones.shufflenet_v1 import SHUFFLENET_V1_ARCH
from ..models.backbones.shufflenet_v2 import DEFAULT_LAYOUT, SHUFFLENET_V2_ARCH
from .core import ConversionError, register_converter
from .keymap import permute_in, permute_out, rename_to_target, stage_units, target_state_dict

#: Official classifier keys (not part of a backbone).
MEGVII_IGNORED = r'classifier\..*'
#: backbone branch name -> official branch name (Sequential indices are identical in both V2 layouts).
MEGVII_V2_BRANCHES = {'branch1': 'branch_proj', 'branch2': 'branch_main'}


def _unit_index(units: Sequence[Sequence[str]]) -> dict[str, int]:
    """``stageN.i`` -> official ``features`` index (all units numbered in one sequence)."""
    flat = [u for stage in units for u in stage]
    return {u: n for n, u in enumerate(flat)}


def _megvii_key(target_key: str, unit_index: dict[str, int], renames: dict[str, str]) -> str:
    """Official key of a backbone key: stem/last conv renamed, ``stageN.i.<branch>`` -> ``features.N.<branch>``."""
    head, _, rest = target_key.partition('.')
    if head in renames:
        return f'{renames[head]}.{rest}'
    stage_unit = '.'.join(target_key.split('.')[:2])
    if stage_unit not in unit_index:
        raise ConversionError(f'no official counterpart for backbone key {target_key!r}')
    tail = target_key[len(stage_unit) + 1:]
    branch, _, rest = tail.partition('.')
    return f'features.{unit_index[stage_unit]}.{MEGVII_V2_BRANCHES.get(branch, branch)}.{rest}'


# ----------------------------------------------------------------------------------------------------- V2 algebra
def _kept_official(position: int, units_left: int) -> int:
    """How many of the next ``units_left`` official stride-1 units keep the channel at ``position``."""
    count = 0
    while count < units_left and position % 2 == 0:
        count += 1
        position //= 2
    return count


def _kept_torchvision(position: int, half: int, units_left: int) -> int:
    """How many of the next ``units_left`` torchvision stride-1 units keep the channel at ``position``."""
    count = 0
    while count < units_left and position < half:
        count += 1
        position *= 2
    return count


def _pair_by_survival(tv_positions: Sequence[int], off_positions: Sequence[int], half: int,
                      units_left: int) -> list[int]:
    """For each backbone position, the official position of the same new channel (equal survival counts)."""
    tv_sorted = sorted(tv_positions, key=lambda q: _kept_torchvision(q, half, units_left))
    off_sorted = sorted(off_positions, key=lambda p: _kept_official(p, units_left))
    pairing = dict(zip(tv_sorted, off_sorted))
    for q, p in pairing.items():
        if _kept_torchvision(q, half, units_left) != _kept_official(p, units_left):
            raise ConversionError(f'internal error: no channel pairing for a unit with {2 * half} channels')
    return [pairing[q] for q in tv_positions]


def megvii_v2_unit_plan(units: Sequence[Sequence[tuple[int, int, int]]]) -> list[list[dict[str, torch.Tensor]]]:
    """Per stage and unit, the index tensors of the permutation algebra (module docstring).

    ``units[s][i] = (stride, in_channels, half)``. Each plan entry holds ``pi_in`` (backbone -> official channel of
    the unit's input), ``alpha`` (stride 2 only), ``beta`` and ``pi_out``. The stem output is in the same order in
    both networks, so ``pi_in`` of the first unit is the identity.
    """
    plans = []
    pi = torch.arange(units[0][0][1])
    for stage in units:
        stage_plan = []
        for i, (stride, in_channels, half) in enumerate(stage):
            units_left = sum(1 for s, _, _ in stage[i + 1:] if s == 1)
            if pi.numel() != in_channels:
                raise ConversionError(f'internal error: unit input has {in_channels} channels, plan has {pi.numel()}')
            entry: dict[str, torch.Tensor] = {'pi_in': pi}
            beta = torch.tensor(_pair_by_survival([2 * j + 1 for j in range(half)],
                                                  [half + j for j in range(half)], half, units_left)) - half
            pi_out = torch.empty(2 * half, dtype=torch.long)
            pi_out[1::2] = half + beta
            if stride == 2:
                alpha = torch.tensor(_pair_by_survival([2 * j for j in range(half)], list(range(half)), half,
                                                       units_left))
                pi_out[0::2] = alpha
                entry['alpha'] = alpha
            else:
                if in_channels != 2 * half or bool((pi[:half] % 2 != 0).any()) or bool((pi[half:] % 2 != 1).any()):
                    raise ConversionError('internal error: the kept channels of the two formulations differ')
                pi_out[0::2] = pi[:half] // 2
            entry['beta'] = beta
            entry['pi_out'] = pi_out
            stage_plan.append(entry)
            pi = pi_out
        plans.append(stage_plan)
    return plans


def _v2_units(target: dict[str, torch.Tensor]) -> tuple[list[list[str]], list[list[tuple[int, int, int]]]]:
    """Unit names per stage and their ``(stride, in_channels, half)``, read from the target backbone."""
    names = stage_units(target, SHUFFLENET_V2_ARCH['stage_names'])
    shapes = [[(2 if f'{u}.branch1.0.weight' in target else 1,
                (target[f'{u}.branch1.0.weight'].shape[0] if f'{u}.branch1.0.weight' in target
                 else 2 * target[f'{u}.branch2.0.weight'].shape[1]),
                target[f'{u}.branch2.5.weight'].shape[0]) for u in stage] for stage in names]
    return names, shapes


def megvii_v2_stage_permutations(widen_factor: float) -> list[torch.Tensor]:
    """For stage2/3/4 of ``layout='torchvision'``: ``index`` with
    ``backbone_stage_output == official_stage_output[:, index]``."""
    target = target_state_dict('ShuffleNetV2', dict(widen_factor=widen_factor, layout='torchvision'))
    _, shapes = _v2_units(target)
    return [stage[-1]['pi_out'] for stage in megvii_v2_unit_plan(shapes)]


def _check_v2_split(src: dict[str, torch.Tensor], unit_index: dict[str, int], stride2_units: list[str]) -> None:
    for unit in stride2_units:
        n = unit_index[unit]
        proj, main = f'features.{n}.branch_proj.2.weight', f'features.{n}.branch_main.5.weight'
        if proj in src and main in src and src[proj].shape[0] != src[main].shape[0]:
            raise ConversionError(
                f'official unit features.{n} ({unit}) splits its {src[proj].shape[0] + src[main].shape[0]} output '
                f'channels into {src[proj].shape[0]} projected + {src[main].shape[0]} main channels; a '
                "ShuffleNetV2 unit with layout='torchvision' uses two equal halves and cannot compute that function, "
                "so this Megvii ShuffleNetV2 width cannot be converted exactly onto it (Megvii 0.5x can: its stage 2 "
                "splits 24 + 24). Build the official formulation instead: layout='megvii' (convert_weights.py: add "
                "--cfg-options layout=megvii; detector config: backbone=dict(type='ShuffleNetV2', layout='megvii', "
                "...)), onto which every official width converts exactly")


@register_converter('megvii', 'ShuffleNetV2')
def convert_megvii_shufflenet_v2(state_dict: dict[str, torch.Tensor],
                                 backbone_kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Official ShuffleNetV2 -> ShuffleNetV2: rename only (``layout='megvii'``), or rename then permute channels
    (``layout='torchvision'``, 0.5x only); see the module docstring."""
    what = f'megvii ShuffleNetV2 -> ShuffleNetV2({backbone_kwargs})'
    target = target_state_dict('ShuffleNetV2', backbone_kwargs)
    names, shapes = _v2_units(target)
    unit_index = _unit_index(names)
    renames = {'conv1': 'first_conv', 'conv5': 'conv_last'}

    def source_key(key: str) -> str:
        return _megvii_key(key, unit_index, renames)

    if backbone_kwargs.get('layout', DEFAULT_LAYOUT) == 'megvii':  # same formulation: names differ, nothing else
        return rename_to_target(state_dict, target, source_key, MEGVII_IGNORED, what)
    _check_v2_split(state_dict, unit_index, [u for stage, sh in zip(names, shapes) for u, (s, _, _) in zip(stage, sh)
                                             if s == 2])
    sd = rename_to_target(state_dict, target, source_key, MEGVII_IGNORED, what)
    for stage, plan in zip(names, megvii_v2_unit_plan(shapes)):
        for unit, entry in zip(stage, plan):
            pi, beta = entry['pi_in'], entry['beta']
            if 'alpha' in entry:
                permute_out(sd, f'{unit}.branch1.0', f'{unit}.branch1.1', pi)
                permute_in(sd, f'{unit}.branch1.2', pi)
                permute_in(sd, f'{unit}.branch2.0', pi)
                permute_out(sd, f'{unit}.branch1.2', f'{unit}.branch1.3', entry['alpha'])
            else:
                half = beta.numel()
                permute_in(sd, f'{unit}.branch2.0', (pi[half:] - 1) // 2)
            permute_out(sd, f'{unit}.branch2.5', f'{unit}.branch2.6', beta)
        last_pi = plan[-1]['pi_out']
    permute_in(sd, 'conv5.0', last_pi)
    return sd


# ------------------------------------------------------------------------------------------------------------- V1
@register_converter('megvii', 'ShuffleNetV1')
def convert_megvii_shufflenet_v1(state_dict: dict[str, torch.Tensor],
                                 backbone_kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Official ShuffleNetV1 (g3/g8, any width) -> ShuffleNetV1: the units mirror the official ones; rename only."""
    what = f'megvii ShuffleNetV1 -> ShuffleNetV1({backbone_kwargs})'
    target = target_state_dict('ShuffleNetV1', backbone_kwargs)
    unit_index = _unit_index(stage_units(target, SHUFFLENET_V1_ARCH['stage_names']))
    return rename_to_target(state_dict, target, lambda k: _megvii_key(k, unit_index, {'conv1': 'first_conv'}),
                            MEGVII_IGNORED, what)
