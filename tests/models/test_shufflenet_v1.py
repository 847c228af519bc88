"""ShuffleNet V1 backbone: the official channel tables and the rule for the other variants, the official structure
and formulation, the family's own arguments (the mmdet backbone contract: ``test_backbone_contract.py``)."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import assert_close_scaled, randomize_bn
from shufflenet_det.models.backbones.shufflenet_v1 import (
    SHUFFLENET_V1_ARCH,
    ShuffleNetV1,
    shufflenet_v1_channels,
    shufflenet_v1_rule_channels,
)
from shufflenet_det.models.layers import count_batchnorm

pytestmark = pytest.mark.compat  # also run on the OpenMMLab-standard stack (make test-openmmlab)

GROUPS = (1, 2, 3, 4, 8)
WIDTHS = (0.25, 0.5, 1.0, 1.5, 2.0)

# Megvii ShuffleNet-Series ShuffleNetV1/network.py stage_out_channels[1:] = [stem, stage2, stage3, stage4]
OFFICIAL = {
    (3, 0.5): (12, 120, 240, 480), (3, 1.0): (24, 240, 480, 960), (3, 1.5): (24, 360, 720, 1440),
    (3, 2.0): (48, 480, 960, 1920), (8, 0.5): (16, 192, 384, 768), (8, 1.0): (24, 384, 768, 1536),
    (8, 1.5): (24, 576, 1152, 2304), (8, 2.0): (48, 768, 1536, 3072),
}


@pytest.mark.parametrize('key', sorted(OFFICIAL))
def test_official_tables(key: tuple[int, float]) -> None:
    groups, width = key
    model = ShuffleNetV1(groups=groups, widen_factor=width, out_indices=(0, 1, 2, 3))
    stem = model.conv1[0].out_channels
    stages = tuple(getattr(model, f'stage{i}')[-1].branch_main_2[0].out_channels for i in (2, 3, 4))
    assert (stem,) + stages == OFFICIAL[key]
    assert model.out_channels == OFFICIAL[key]
    assert model.out_strides == (4, 8, 16, 32)
    # the documented rule reproduces every official table
    assert shufflenet_v1_rule_channels(groups, width) == OFFICIAL[key]


def test_rule_channels_paper_table_and_divisibility() -> None:
    paper = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}  # paper Table 1, 1x
    for groups, width in itertools.product(GROUPS, WIDTHS):
        stem, c2, c3, c4 = shufflenet_v1_channels(groups, width)
        if width == 1.0:
            assert c2 == paper[groups]
        assert abs(c2 - paper[groups] * width) <= 2 * groups, (groups, width, c2)  # nearest multiple of 4g
        assert c2 % (4 * groups) == 0 and stem % groups == 0, (groups, width)
        assert (c3, c4) == (2 * c2, 4 * c2)
    assert shufflenet_v1_channels(2, 0.25) == (12, 48, 96, 192)  # 200 * 0.25 = 50 -> 48 (multiple of 8)
    assert shufflenet_v1_channels(4, 0.5) == (12, 144, 288, 576)  # 136 -> tie between 128 and 144 -> 144
    assert shufflenet_v1_channels(4, 0.25) == (12, 64, 128, 256)  # 68 -> 64; stem 12 is a multiple of 4


def test_structure_mirrors_official_block() -> None:
    """Grouped/ungrouped 1x1 convs, bottleneck out/4, avgpool shortcut: shapes of the official g3 1.0x keys."""
    model = ShuffleNetV1(groups=3, widen_factor=1.0)
    sd = model.state_dict()
    assert sd['conv1.0.weight'].shape == (24, 3, 3, 3)
    # stage2.0: first pw not grouped (24 -> 60), dw 60, grouped pw 60 -> 240 - 24
    assert sd['stage2.0.branch_main_1.0.weight'].shape == (60, 24, 1, 1)
    assert sd['stage2.0.branch_main_1.3.weight'].shape == (60, 1, 3, 3)
    assert sd['stage2.0.branch_main_2.0.weight'].shape == (216, 20, 1, 1)
    # stage2.1: grouped pw 240 -> 60, grouped pw 60 -> 240
    assert sd['stage2.1.branch_main_1.0.weight'].shape == (60, 80, 1, 1)
    assert sd['stage2.1.branch_main_2.0.weight'].shape == (240, 20, 1, 1)
    # stage3.0: grouped pw 240 -> 120, main branch 480 - 240
    assert sd['stage3.0.branch_main_1.0.weight'].shape == (120, 80, 1, 1)
    assert sd['stage3.0.branch_main_2.0.weight'].shape == (240, 40, 1, 1)
    for name in ('stage2', 'stage3', 'stage4'):
        stage = getattr(model, name)
        assert isinstance(stage[0].branch_proj, nn.AvgPool2d) and stage[0].branch_main_1[3].stride == (2, 2)
        assert all(not hasattr(unit, 'branch_proj') for unit in stage[1:])
    # the state dict renames 1:1 onto the official one: 16 units, keys first_conv / features.N
    units = [k.split('.')[:2] for k in sd if k.startswith('stage')]
    assert len({tuple(u) for u in units}) == 16
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    assert count_batchnorm(model) == 1 + 16 * 3  # stem + per unit: after each of the three convs


def _official_forward(sd: dict, x: torch.Tensor, groups: int) -> torch.Tensor:
    """The official ShuffleNetV1 feature forward (Megvii formulation), written functionally on a state dict."""

    def bn(t: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(t, sd[p + '.running_mean'], sd[p + '.running_var'], sd[p + '.weight'], sd[p + '.bias'],
                            False, 0.0, 1e-5)

    def conv(t: torch.Tensor, p: str, stride: int = 1) -> torch.Tensor:
        w = sd[p + '.weight']
        return F.conv2d(t, w, stride=stride, padding=w.shape[-1] // 2, groups=t.shape[1] // w.shape[1])

    x = F.relu(bn(conv(x, 'conv1.0', 2), 'conv1.1'))
    x = F.max_pool2d(x, 3, 2, 1)
    for stage, repeats in zip((2, 3, 4), (4, 8, 4)):
        for i in range(repeats):
            p = f'stage{stage}.{i}'
            stride = 2 if i == 0 else 1
            y = F.relu(bn(conv(x, p + '.branch_main_1.0'), p + '.branch_main_1.1'))
            y = bn(conv(y, p + '.branch_main_1.3', stride), p + '.branch_main_1.4')
            b, c, h, w = y.shape
            y = y.reshape(b, c // groups, groups, h, w).permute(0, 2, 1, 3, 4).reshape(b, c, h, w)
            y = bn(conv(y, p + '.branch_main_2.0'), p + '.branch_main_2.1')
            x = F.relu(y + x) if stride == 1 else torch.cat((F.avg_pool2d(x, 3, 2, 1), F.relu(y)), 1)
    return x


@pytest.mark.parametrize('groups', [3, 8])
def test_matches_official_formulation(groups: int) -> None:
    model = randomize_bn(ShuffleNetV1(groups=groups, widen_factor=0.5, out_indices=(3,)))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ours = model(x)[0]
        ref = _official_forward(model.state_dict(), x, groups)
    # the same weights in a functional re-implementation (other module boundaries, another shuffle): rounding of
    # another summation order, a few float32 eps (1.2e-7) per layer of the features' magnitude S; allowed 2e-5 of
    # max(1, S), while a wrong group routing or shuffle moves features by O(S)
    assert_close_scaled(ours, ref, atol=2e-5)


@pytest.mark.parametrize('kwargs,argument', [
    (dict(groups=5), 'groups'),
    (dict(widen_factor=0.3), 'widen_factor'),
])
def test_bad_arguments(kwargs: dict, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        ShuffleNetV1(**kwargs)


def test_arch_table_is_data() -> None:
    assert SHUFFLENET_V1_ARCH['official'] == OFFICIAL
    assert SHUFFLENET_V1_ARCH['stage_repeats'] == (4, 8, 4)
