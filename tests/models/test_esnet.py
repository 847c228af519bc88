"""ESNet (PP-PicoDet's Enhanced ShuffleNet): the S / M / L table, shapes at PicoDet's feature maps, equivalence with
PaddleDetection's network (``tests/official_refs/paddle_esnet.py``) through the Paddle -> module name table of the
module docstring, the backbone contract on the real S network, and argument errors.

The contract on a narrow ESNet, shared with every family, is in ``test_backbone_contract.py``.
"""
from __future__ import annotations

import re

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from helpers import assert_close_scaled, build_backbone, randomize_bn
from official_refs import paddle_esnet
from shufflenet_det.models.backbones.archs.esnet import ESNET_ARCHS, make_divisible, parse_esnet_arch
from shufflenet_det.models.backbones.esnet import ESDownUnit, ESUnit
from shufflenet_det.models.layers import count_batchnorm

pytestmark = pytest.mark.compat  # also run on the OpenMMLab-standard stack (make test-openmmlab)

#: Stage widths (strides 8 / 16 / 32) and the main-branch width of every unit, worked out by hand from the legacy
#: PicoDet configs: width = make_divisible(scale * (128, 256, 512), 16), mid = make_divisible(int(width * r), 8).
EXPECTED = {
    'S': ((96, 192, 384), ((88, 48, 48), (96, 120, 96, 120, 96, 96, 96), (192, 192, 192))),
    'M': ((128, 256, 512), ((112, 64, 128), (160, 128, 192, 160, 160, 128, 160), (512, 320, 384))),
    'L': ((160, 320, 640), ((144, 80, 160), (200, 160, 240, 200, 200, 160, 200), (640, 400, 480))),
}


@pytest.mark.parametrize('variant', list(ESNET_ARCHS))
def test_table_widths(variant: str) -> None:
    spec = parse_esnet_arch(variant)
    assert (spec.stage_channels, spec.mid_channels) == EXPECTED[variant]
    assert spec.repeats == (3, 7, 3) and spec.stem_channels == 24 and spec.se_reduction == 4
    assert spec.channel_ratio == tuple(paddle_esnet.PICODET_ESNET[variant]['channel_ratio'])


def test_make_divisible_is_paddles() -> None:
    for v in (8, 12, 20, 84, 96, 100, 140, 156, 160, 200.5, 383.9, 640, 1000):
        for divisor in (8, 16):
            assert make_divisible(v, divisor) == paddle_esnet.make_divisible(v, divisor), (v, divisor)
    assert make_divisible(4, 16) == 16 and make_divisible(23, 16) == 32 and make_divisible(24, 16) == 32


@pytest.mark.slow
@pytest.mark.parametrize('variant', list(ESNET_ARCHS))
def test_shapes_at_picodet_feature_maps(variant: str) -> None:
    """Default out_indices (1, 2, 3) = PicoDet's feature_maps [4, 11, 14]: strides 8 / 16 / 32 at 320."""
    model = build_backbone(dict(type='ESNet', arch=variant)).eval()
    widths = EXPECTED[variant][0]
    assert model.out_indices == (1, 2, 3) and model.out_channels == widths and model.out_strides == (8, 16, 32)
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 320, 320))
    assert [tuple(o.shape) for o in outs] == [(1, c, 320 // s, 320 // s) for c, s in zip(widths, (8, 16, 32))]
    full = build_backbone(dict(type='ESNet', arch=variant, out_indices=(0, 1, 2, 3)))
    assert full.out_channels == (24, *widths) and full.out_strides == (4, 8, 16, 32)


# ---------------------------------------------------------------- equivalence with PaddleDetection's ESNet
_UNIT = re.compile(r'^([234])_(\d+)\.')


def paddle_to_module_key(key: str) -> str:
    """The name rule of the module docstring (Paddle ``.pdparams`` key -> ESNet state-dict key)."""
    unit = _UNIT.match(key)
    if unit:
        key = f'stage{unit.group(1)}.{int(unit.group(2)) - 1}.' + key[unit.end():]
    parts = [p[1:] if p.startswith('_') else p for p in key.split('.')]
    parts = [{'conv': '0', 'batch_norm': '1', 'mean': 'running_mean', 'variance': 'running_var'}.get(p, p)
             for p in parts]
    return '.'.join(parts)


def convert(paddle_state: dict) -> dict:
    out = {}
    for key, value in paddle_state.items():
        new = paddle_to_module_key(key)
        assert new not in out, f'two Paddle keys map to {new}'
        out[new] = value
    return out


@pytest.mark.parametrize('variant', list(ESNET_ARCHS))
def test_paddle_names_map_one_to_one_and_outputs_equal(variant: str) -> None:
    """Every Paddle parameter has exactly one counterpart of the same shape (the name table of the module
    docstring), and with converted random weights the three PicoDet feature maps equal Paddle's."""
    ref = paddle_esnet.randomize_(paddle_esnet.picodet_esnet(variant), seed=1)
    paddle_state = paddle_esnet.paddle_state_dict(ref)
    assert not any(k.endswith(('running_mean', 'running_var', 'num_batches_tracked')) for k in paddle_state)
    assert any(k.endswith('._mean') for k in paddle_state) and any(k.endswith('._variance') for k in paddle_state)
    model = build_backbone(dict(type='ESNet', arch=variant))
    ours = {k: v for k, v in model.state_dict().items() if not k.endswith('num_batches_tracked')}
    converted = convert(paddle_state)
    assert set(converted) == set(ours)
    for key, value in converted.items():
        assert value.shape == ours[key].shape, key
    model.load_state_dict(converted, strict=False)
    model.eval()
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        expected, actual = ref(x), model(x)
    assert len(expected) == len(actual) == 3
    for e, a in zip(expected, actual):
        # same ops in the same order; only Paddle's hard sigmoid slope (0.1666667 vs 1/6) differs, by 2e-8
        assert_close_scaled(a, e, atol=1e-5)
    # the reference loads its own Paddle-named state dict back (what a converter test will do with a .pdparams)
    paddle_esnet.load_paddle_state_dict(paddle_esnet.picodet_esnet(variant), paddle_state)


def test_example_keys_of_the_name_table() -> None:
    assert paddle_to_module_key('_conv1._batch_norm._mean') == 'conv1.1.running_mean'
    assert paddle_to_module_key('3_1._conv_dw_mv1._batch_norm._variance') == 'stage3.0.conv_dw_mv1.1.running_var'
    assert paddle_to_module_key('4_3._se.conv2.bias') == 'stage4.2.se.conv2.bias'
    assert paddle_to_module_key('2_2._conv_linear._conv.weight') == 'stage2.1.conv_linear.0.weight'


# ---------------------------------------------------------------- the contract on the real ESNet-S
def test_frozen_stages_and_norm_eval_on_s() -> None:
    model = build_backbone(dict(type='ESNet', arch='S', frozen_stages=1, norm_eval=True))
    model.train()
    for name in ('conv1', 'stage2'):
        assert all(not p.requires_grad for p in getattr(model, name).parameters()), name
    for name in ('stage3', 'stage4'):
        assert all(p.requires_grad for p in getattr(model, name).parameters()), name
    assert all(not m.training for m in model.modules() if isinstance(m, _BatchNorm))


def test_with_cp_same_outputs_on_s() -> None:
    torch.manual_seed(0)
    ref = build_backbone(dict(type='ESNet', arch='S'))
    ckp = build_backbone(dict(type='ESNet', arch='S', with_cp=True))
    ckp.load_state_dict(ref.state_dict())
    ref.train(), ckp.train()
    x = torch.randn(2, 3, 64, 64)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out1, out2 = ref(x1), ckp(x2)
    for a, b in zip(out1, out2):
        assert_close_scaled(b, a, atol=1e-5)
    sum(o.sum() for o in out1).backward()
    sum(o.sum() for o in out2).backward()
    assert_close_scaled(x2.grad, x1.grad, atol=1e-5, msg='input grad')


@pytest.mark.parametrize('variant', ['S', 'L'])
def test_switch_to_deploy_folds_every_bn(variant: str) -> None:
    """Folded outputs within 2e-5 of max(1, |output|) (the contract test's FOLD_ATOL, see there)."""
    model = randomize_bn(build_backbone(dict(type='ESNet', arch=variant, out_indices=(0, 1, 2, 3))))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        after = model.switch_to_deploy()(x)
    assert count_batchnorm(model) == 0 and model.deployed
    for a, b in zip(before, after):
        assert_close_scaled(b, a, atol=2e-5)


def test_default_activation_is_hard_swish() -> None:
    model = build_backbone(dict(type='ESNet', arch='S'))
    unit = model.stage2[0]
    assert isinstance(unit, ESDownUnit) and isinstance(model.stage2[1], ESUnit)
    assert isinstance(model.conv1[2], torch.nn.Hardswish) and isinstance(unit.conv_pw_mv1[2], torch.nn.Hardswish)
    assert isinstance(unit.se.relu, torch.nn.ReLU) and isinstance(unit.se.gate, torch.nn.Hardsigmoid)


# ---------------------------------------------------------------- argument errors
@pytest.mark.parametrize('arch,match', [
    ('X', r"arch='X' is not a published network; valid names: \['S', 'M', 'L'\]"),
    (0.75, 'must be one of'),
    (dict(scale=1.0, width=2), r"unknown keys \['width'\]"),
    (dict(channel_ratio=[1.0] * 13), 'needs "scale"'),
    (dict(base='XL'), r"base='XL' must be one of \['S', 'M', 'L'\]"),
    (dict(scale=0), r"arch\['scale'\]=0 must be a positive number"),
    (dict(scale=True), r"arch\['scale'\]=True must be a positive number"),
    (dict(base='S', channel_ratio=[0.5] * 12), 'has 12 entries; it needs one per unit, 13'),
    (dict(base='S', channel_ratio='0.5'), 'must be a list of 13 positive numbers'),
    (dict(base='S', channel_ratio=[0.5] * 12 + [-1]), r"arch\['channel_ratio'\]=-1 must be a positive number"),
    (dict(base='S', repeats=(3, 7)), 'must be a list of 3 positive ints'),
    (dict(base='S', repeats=(3, 7, 0)), 'must be a list of 3 positive ints'),
    (dict(base='M', repeats=(1, 1, 1)), 'has 13 entries; it needs one per unit, 3'),
])
def test_bad_arch_raises(arch, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_backbone(dict(type='ESNet', arch=arch))


def test_bad_contract_arguments_name_the_argument() -> None:
    with pytest.raises(ValueError, match=r'out_indices=\(4,\) is invalid: \[4\] not among the output indices'):
        build_backbone(dict(type='ESNet', arch='S', out_indices=(4,)))
    with pytest.raises(ValueError, match='frozen_stages=4 is not supported'):
        build_backbone(dict(type='ESNet', arch='S', frozen_stages=4))
    with pytest.raises(ValueError, match="act_cfg: type 'HardSwish' is not a registered layer"):
        build_backbone(dict(type='ESNet', arch='S', act_cfg=dict(type='HardSwish')))


def test_units_check_widths() -> None:
    with pytest.raises(ValueError, match='mid_channels=7 must be an even int'):
        ESUnit(32, 7, 32)
    with pytest.raises(ValueError, match='out_channels=33 must be even'):
        ESDownUnit(24, 16, 33)
    with pytest.raises(ValueError, match='stride-1 unit needs in_channels == out_channels, got 24 and 32'):
        ESUnit(24, 16, 32)


def test_dict_encodings() -> None:
    """A base with overrides, and Paddle's defaults (channel_ratio all ones, repeats 3/7/3) without a base."""
    assert parse_esnet_arch(dict(base='M', scale=1.25)) == parse_esnet_arch('L')
    plain = parse_esnet_arch(dict(scale=1.0))
    assert plain.channel_ratio == (1.0,) * 13 and plain.mid_channels[0] == (128, 128, 128)
    small = parse_esnet_arch(dict(scale=0.25, repeats=(1, 2, 1), channel_ratio=(0.5,) * 4))
    assert small.stage_channels == (32, 64, 128) and small.mid_channels == ((16,), (32, 32), (64,))
