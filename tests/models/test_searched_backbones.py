"""DetNAS, ShuffleNetV2+ and OneShot backbones: published encodings, layout, channel routing, export-friendliness and
encoding validation (the mmdet backbone contract: ``test_backbone_contract.py``)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import assert_close_scaled, build_backbone, randomize_bn
from shufflenet_det.models.backbones import DetNAS, OneShot, ShuffleNetV2Plus
from shufflenet_det.models.backbones.archs import (
    DETNAS_ARCHS,
    ONESHOT_ARCH,
    SHUFFLENET_V2_PLUS_ARCHS,
    parse_oneshot_arch,
)
from shufflenet_det.models.backbones.spos_blocks import (
    SearchedShuffleBlock,
    SqueezeExcite,
    deinterleave_channels,
    deinterleave_index,
)
from shufflenet_det.models.layers import channel_shuffle

pytestmark = pytest.mark.compat  # also run on the OpenMMLab-standard stack (make test-openmmlab)

ALL5 = (0, 1, 2, 3, 4)
# [stem, s1, s2, s3, s4, last] channels of the official networks (megvii-model/DetNAS, ShuffleNet-Series)
DETNAS_CHANNELS = {'COCO-FPN-300M': (16, 64, 160, 320, 640, 1024), 'COCO-RetinaNet-300M': (16, 64, 160, 320, 640, 1024),
                   'VOC-FPN-300M': (16, 64, 160, 320, 640, 1024), 'VOC-RetinaNet-300M': (16, 64, 160, 320, 640, 1024),
                   'COCO-FPN-1.3G': (48, 96, 240, 480, 960, 1024), 'COCO-FPN-3.8G': (72, 172, 432, 864, 1728, 1728)}
V2PLUS_CHANNELS = {'Small': (36, 104, 208, 416), 'Medium': (48, 128, 256, 512), 'Large': (68, 168, 336, 672)}
PUBLISHED = ([dict(type='DetNAS', arch=a) for a in DETNAS_CHANNELS]
             + [dict(type='ShuffleNetV2Plus', arch=a) for a in V2PLUS_CHANNELS] + [dict(type='OneShot')])


def _id(cfg: dict) -> str:
    return f'{cfg["type"]}-{cfg.get("arch", "published")}'


# ---------------------------------------------------------------- published encodings
@pytest.mark.parametrize('cfg', PUBLISHED, ids=_id)
def test_published_encoding_declares_the_official_channels(cfg: dict) -> None:
    model = build_backbone(dict(cfg, out_indices=ALL5))
    assert model.out_strides == (4, 8, 16, 32, 32)
    if cfg['type'] == 'DetNAS':
        stem, *stages, last = DETNAS_CHANNELS[cfg['arch']]
        assert model.conv1[0].out_channels == stem
        assert model.out_channels == tuple(stages) + (last,)
    elif cfg['type'] == 'ShuffleNetV2Plus':
        assert model.out_channels == V2PLUS_CHANNELS[cfg['arch']] + (1280,)
    else:
        assert model.out_channels == (64, 160, 320, 640, 1024)
    assert [len(getattr(model, f'stage{i}')) for i in range(1, 5)] == list(model.arch.repeats)


def test_layout_follows_encoding() -> None:
    """Choices, kernels, mid channels and stride placement come from the encoding, unit by unit."""
    model = DetNAS(arch='COCO-FPN-300M')
    units = [u for i in range(1, 5) for u in getattr(model, f'stage{i}')]
    choices = DETNAS_ARCHS['COCO-FPN-300M']['choices']
    assert len(units) == 20
    for unit, choice, out in zip(units, choices, [64] * 4 + [160] * 4 + [320] * 8 + [640] * 4):
        assert unit.choice == ('shufflenet_3x3', 'shufflenet_5x5', 'shufflenet_7x7', 'xception_3x3')[choice]
        assert unit.mid_channels == out // 2
        if choice == 3:
            dws = [m for m in unit.branch_main if isinstance(m, nn.Conv2d) and m.groups > 1]
            assert len(dws) == 3 and [m.stride for m in dws] == [(unit.stride,) * 2, (1, 1), (1, 1)]
        else:
            assert unit.branch_main[3].kernel_size == ((3, 5, 7)[choice],) * 2
            assert unit.branch_main[3].stride == (unit.stride,) * 2
    assert [u.stride for u in units] == [2, 1, 1, 1, 2, 1, 1, 1, 2] + [1] * 7 + [2, 1, 1, 1]
    # the stem has no max-pool: stage 1 opens with the second stride-2 layer
    assert model.conv1[0].stride == (2, 2) and not any(isinstance(m, nn.MaxPool2d) for m in model.modules())

    oneshot = OneShot()
    scales = [ONESHOT_ARCH['scale_list'][i] for i in ONESHOT_ARCH['scale_ids']]
    outs = [64] * 4 + [160] * 4 + [320] * 8 + [640] * 4
    mids = [u.mid_channels for i in range(1, 5) for u in getattr(oneshot, f'stage{i}')]
    assert mids == [int(o // 2 * s) for o, s in zip(outs, scales)]
    assert mids[:3] == [44, 38, 25]  # 32 * 1.4, 32 * 1.2, 32 * 0.8


def test_v2plus_activations_and_se() -> None:
    model = ShuffleNetV2Plus(arch='Medium')
    assert isinstance(model.conv1[2], nn.Hardswish) and isinstance(model.conv_last[2], nn.Hardswish)
    for i in range(1, 5):
        for unit in getattr(model, f'stage{i}'):
            acts = [m for m in unit.branch_main if isinstance(m, (nn.ReLU, nn.Hardswish))]
            assert all(isinstance(a, nn.ReLU if i == 1 else nn.Hardswish) for a in acts) and acts
            has_se = isinstance(unit.branch_main[-1], SqueezeExcite)
            assert has_se == (i >= 3)
            if unit.stride == 2:
                assert isinstance(unit.branch_proj[-1], nn.ReLU if i == 1 else nn.Hardswish)
    se = model.stage3[0].branch_main[-1]
    main_out = 256 - 128
    assert se.attention[1].in_channels == main_out and se.attention[1].out_channels == main_out // 4
    # act_cfg replaces every published activation (hardware without h-swish)
    relu_only = ShuffleNetV2Plus(arch='Small', act_cfg=dict(type='ReLU'))
    assert not any(isinstance(m, nn.Hardswish) for m in relu_only.modules())


def test_squeeze_excite_matches_formula() -> None:
    torch.manual_seed(0)
    se = randomize_bn(SqueezeExcite(8))
    x = torch.randn(2, 8, 5, 5)
    a = se.attention
    z = a[4](torch.relu(a[2](a[1](x.mean((2, 3), keepdim=True)))))
    # the module's own layers on the same tensors: values O(1), equal up to the last bits of h-sigmoid's fused
    # kernel; assert_close's float32 defaults (atol 1e-5, rtol 1.3e-6) cover that, a wrong gate does not pass
    torch.testing.assert_close(se(x), x * torch.clamp(z + 3, 0, 6) / 6)


# ---------------------------------------------------------------- channel routing
def test_deinterleave_is_inverse_of_torchvision_shuffle() -> None:
    x = torch.arange(12.).view(1, 12, 1, 1)
    y = deinterleave_channels(x)  # channel copies of integer values: exact
    assert y.flatten().tolist() == [0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11]
    assert torch.equal(y, x[:, deinterleave_index(12)])
    assert torch.equal(channel_shuffle(y, 2), x)


@pytest.mark.parametrize('choice', ['shufflenet_5x5', 'xception_3x3'])
def test_stride1_unit_equals_official_even_odd_routing(choice: str) -> None:
    """Fed ``D(x)``, the unit returns ``D`` of the official ``cat(x[0::2], main(x[1::2]))``."""
    torch.manual_seed(0)
    unit = randomize_bn(SearchedShuffleBlock(24, 24, 1, choice, 12))
    x = torch.randn(2, 24, 6, 6)
    with torch.no_grad():
        official = torch.cat((x[:, 0::2], unit.branch_main(x[:, 1::2])), 1)
        ours = unit(deinterleave_channels(x))
    # the same branch on the same channels, fed through other copies / strides: normally bit-identical; 1e-6 of
    # max(1, S) (~10 float32 eps of the magnitude) covers another kernel choice for a differently strided input
    assert_close_scaled(ours, deinterleave_channels(official), atol=1e-6)


# ---------------------------------------------------------------- output stages, BN folding, tracing
def test_frozen_stage_zero_freezes_stem_and_stage1_only() -> None:
    model = DetNAS(frozen_stages=0)
    model.train()
    assert all(not p.requires_grad for p in model.conv1.parameters())
    assert all(not p.requires_grad for p in model.stage1.parameters())
    assert all(p.requires_grad for p in model.stage2.parameters())
    assert not model.conv1[1].training and model.stage2[0].branch_main[1].training


def test_deploy_folds_se_bn() -> None:
    model = randomize_bn(ShuffleNetV2Plus(arch='Small', out_indices=ALL5))
    se = model.stage4[1].branch_main[-1]
    assert isinstance(se.attention[2], nn.BatchNorm2d)
    model.switch_to_deploy()
    assert isinstance(se.attention[2], nn.Identity) and se.attention[1].bias is not None


def test_forward_traces_without_data_dependent_control_flow() -> None:
    """A trace taken at one size runs at another and matches eager (static graph: slices, cat, reshape only)."""
    model = ShuffleNetV2Plus(arch='Small', out_indices=ALL5).eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.randn(1, 3, 64, 64), check_trace=False)
        x = torch.randn(1, 3, 96, 64)
        for a, b in zip(traced(x), model(x)):
            # the trace replays the same aten ops on the same tensors (normally bit-identical); scale-relative
            # slack of 1e-5 of max(1, S) (assert_close's float32 rtol on every element besides) in case the
            # graph executor picks another kernel, far below what a size-specialised trace would change
            assert_close_scaled(a, b, atol=1e-5, rtol=1.3e-6)


# ---------------------------------------------------------------- encodings as dicts / bad encodings
def test_custom_dict_encoding() -> None:
    arch = dict(stem_channels=8, stage_channels=[16, 32, 48, 64], last_channels=96, repeats=[1, 2, 1, 2],
                choices=['xception_3x3', 0, 1, 2, 3, 'shufflenet_7x7'])
    model = DetNAS(arch=arch, out_indices=ALL5)
    assert model.out_channels == (16, 32, 48, 64, 96)
    assert [u.choice for s in (model.stage1, model.stage2, model.stage3, model.stage4) for u in s] == [
        'xception_3x3', 'shufflenet_3x3', 'shufflenet_5x5', 'shufflenet_7x7', 'xception_3x3', 'shufflenet_7x7']
    plus = ShuffleNetV2Plus(arch=dict(arch, stage_acts=['ReLU', 'ReLU', 'HSwish', 'HSwish'],
                                      se_stages=[False, False, False, True]))
    assert isinstance(plus.stage4[0].branch_main[-1], SqueezeExcite)
    assert not isinstance(plus.stage3[0].branch_main[-1], SqueezeExcite)
    shot = OneShot(arch=dict(arch, scale_ids=[0, 1, 2, 3, 4, 5], scale_list=[0.5, 1.0, 1.5, 2.0, 0.25, 0.75]))
    assert [u.mid_channels for s in (shot.stage1, shot.stage2, shot.stage3, shot.stage4) for u in s] == \
        [4, 16, 24, 48, 8, 24]  # int(out // 2 * scale)
    assert OneShot(arch='Published').arch == OneShot().arch == parse_oneshot_arch(None)


def test_arch_none_builds_the_family_default_with_its_published_activations() -> None:
    from shufflenet_det.models.backbones.archs import parse_detnas_arch, parse_v2plus_arch
    assert DetNAS(arch=None).arch == DetNAS().arch == parse_detnas_arch('COCO-FPN-300M')
    assert ShuffleNetV2Plus(arch=None).arch == ShuffleNetV2Plus().arch == parse_v2plus_arch('Small')
    for model in (DetNAS(), OneShot()):  # act_cfg=None keeps the published ReLU everywhere
        assert model.act_cfg is None
        assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 2 + sum(
            3 if c == 'xception_3x3' else 2 for c in model.arch.choices) + 4
        assert not any(isinstance(m, (nn.Identity, nn.Hardswish)) for m in model.modules())


_GOOD = dict(stem_channels=16, stage_channels=[64, 160, 320, 640], last_channels=1024, repeats=[4, 4, 8, 4],
             choices=list(DETNAS_ARCHS['COCO-FPN-300M']['choices']))


@pytest.mark.parametrize('builder, arch, message', [
    (DetNAS, 'COCO-FPN-500M', "valid names: \\['COCO-FPN-300M'"),
    (ShuffleNetV2Plus, 'Tiny', "valid names: \\['Small', 'Medium', 'Large'\\]"),
    (OneShot, 'SPOS', "valid names: \\['Published'\\]"),
    (DetNAS, dict(_GOOD, choices=_GOOD['choices'][:19]), r'19 entries but repeats=\[4, 4, 8, 4\] make 20 units'),
    (DetNAS, dict(_GOOD, choices=_GOOD['choices'][:19] + [4]), r"choices\"\]\[19\]=4 is not a block choice; allowed "
                                                              r"choices: \['0 \(shufflenet_3x3\)'"),
    (DetNAS, dict(_GOOD, choices=_GOOD['choices'][:19] + ['mobilenet']), 'is not a block choice'),
    (DetNAS, dict(_GOOD, stage_channels=[64, 161, 320, 640]), 'stage_channels.*161 is odd'),
    (DetNAS, dict(_GOOD, stage_channels=[64, 60, 320, 640]), 'must be larger than the input'),
    (DetNAS, dict(_GOOD, repeats=[4, 4, 8]), r'repeats.*3 entries, expected 4'),
    (DetNAS, dict(_GOOD, stage_channels=[64, 160, 320, 0]), 'positive int'),
    (DetNAS, dict(_GOOD, depth=3), r"unknown keys \['depth'\]"),
    (DetNAS, {k: v for k, v in _GOOD.items() if k != 'repeats'}, r"missing keys \['repeats'\]"),
    (OneShot, _GOOD, r"missing keys \['scale_ids'\]"),
    (OneShot, dict(_GOOD, scale_ids=[1] * 19), 'one entry per unit \\(20'),
    (OneShot, dict(_GOOD, scale_ids=[1] * 19 + [8]),
     r'scale_ids"\]\[19\]=8 .* allowed values: \[0, 1, 2, 3, 4, 5, 6, 7\]'),
    (OneShot, dict(_GOOD, scale_ids=[0] * 20, scale_list=[0.01]), 'mid channels'),
    (OneShot, dict(_GOOD, scale_ids=[0] * 20, scale_list=[]), 'scale_list'),
    (OneShot, 5, 'must be None'),
    (ShuffleNetV2Plus, dict(_GOOD, stage_acts=['ReLU'] * 4), 'SE with ReLU'),
    (ShuffleNetV2Plus, dict(_GOOD, stage_acts=['GELU'] * 4), "allowed values|from \\['ReLU', 'HSwish'\\]"),
    (ShuffleNetV2Plus, dict(_GOOD, se_stages=[True]), '4 bools'),
])
def test_bad_encoding_raises(builder, arch, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        builder(arch=arch)


# ---------------------------------------------------------------- ImageNet head / complexity
def test_v2plus_head_equals_official_head_and_counts() -> None:
    """ShuffleNetV2PlusHead computes the official LastSE + fc + classifier head; with it, the classifier counts the
    same multiply-adds and parameters as the official network (the published-variant check relies on this)."""
    from official_refs.megvii_searched import build_official, randomize_
    from shufflenet_det.analysis import classifier_complexity, model_complexity
    from shufflenet_det.analysis.complexity import CLASSIFIER_HEADS
    from shufflenet_det.models.backbones.shufflenet_v2_plus import ShuffleNetV2PlusHead

    official = randomize_(build_official('ShuffleNetV2Plus', SHUFFLENET_V2_PLUS_ARCHS['Small']))
    head = ShuffleNetV2PlusHead(1280, 1000).eval()
    head.load_state_dict({k.replace('LastSE.SE_opr', 'last_se.attention').replace('classifier.0', 'classifier'): v
                          for k, v in official.state_dict().items() if k.startswith(('LastSE', 'fc', 'classifier'))})
    feat = torch.randn(2, 1280, 2, 2)
    with torch.no_grad():
        expected = official.classifier(official.fc(official.LastSE(feat.mean((2, 3), keepdim=True)).flatten(1)))
        # another module (SE, fc) with the same weights: summation-order rounding over <= 1280 terms, ~sqrt(1280)
        # float32 eps (4e-6) of the logits' magnitude S; allowed 1e-5 of max(1, S) + 1e-5 of each element
        assert_close_scaled(head(feat), expected, atol=1e-5, rtol=1e-5)
    assert 'ShuffleNetV2Plus' in CLASSIFIER_HEADS
    ours = classifier_complexity(dict(type='ShuffleNetV2Plus', arch='Small'), classifier_bias=False)
    theirs = model_complexity(official, 224)
    assert ours['flops'] == theirs['flops'] and ours['params'] == theirs['params']


def test_published_variants_registered_for_flops_check() -> None:
    """Every published encoding is in PUBLISHED_VARIANTS, so tests/analysis/test_flops.py checks its
    multiply-adds / params."""
    from shufflenet_det.analysis import published_variants

    variants = {v.name: v for v in published_variants(['DetNAS', 'ShuffleNetV2Plus', 'OneShot'])}
    assert set(variants) == ({f'DetNAS {a}' for a in DETNAS_CHANNELS} | {f'ShuffleNetV2+ {a}' for a in V2PLUS_CHANNELS}
                             | {'OneShot'})
    assert variants['DetNAS COCO-FPN-300M'].flops == 321.2e6 and variants['OneShot'].params == 3.43e6
    assert not variants['ShuffleNetV2+ Small'].classifier_bias and variants['DetNAS VOC-FPN-300M'].classifier_bias
