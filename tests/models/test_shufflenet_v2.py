"""ShuffleNet V2 backbone: the paper's channel table, torchvision's layout and numerical equivalence with it, the
official Megvii layout, the family's own arguments (the mmdet backbone contract: ``test_backbone_contract.py``)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import assert_close_scaled, randomize_bn
from shufflenet_det.models.backbones.shufflenet_v2 import SHUFFLENET_V2_ARCH, ShuffleNetV2

pytestmark = pytest.mark.compat  # also run on the OpenMMLab-standard stack (make test-openmmlab)

# Paper Table 5 = torchvision stages_out_channels: [stem, stage2, stage3, stage4, conv5]
PAPER = {0.5: (24, 48, 96, 192, 1024), 1.0: (24, 116, 232, 464, 1024), 1.5: (24, 176, 352, 704, 1024),
         2.0: (24, 244, 488, 976, 2048)}


@pytest.mark.parametrize('width', sorted(PAPER))
def test_declared_outputs_are_the_paper_table(width: float) -> None:
    model = ShuffleNetV2(widen_factor=width, out_indices=(0, 1, 2, 3, 4))
    assert model.out_channels == PAPER[width]
    assert model.out_strides == (4, 8, 16, 32, 32)


def test_default_outputs() -> None:
    model = ShuffleNetV2()
    assert model.out_indices == (1, 2, 3) and model.out_channels == (116, 232, 464)
    assert SHUFFLENET_V2_ARCH['channels'] == PAPER


# ---------------------------------------------------------------- torchvision reference (no torchvision needed)
def torchvision_state_dict(width: float, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict with torchvision ShuffleNetV2's keys and shapes, ``fc.*`` included.

    Layout (torchvision/models/shufflenetv2.py): conv1.{0 conv, 1 bn}; stage{2,3,4}.{i}.branch1.{0 dw, 1 bn, 2 pw,
    3 bn} for the stride-2 first unit; branch2.{0 pw, 1 bn, 3 dw, 4 bn, 5 pw, 6 bn}; conv5.{0, 1}; fc (with bias).
    """
    gen = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def conv(key: str, out_c: int, in_c: int, k: int) -> None:
        sd[key + '.weight'] = torch.randn(out_c, in_c, k, k, generator=gen) * (2.0 / (in_c * k * k)) ** 0.5

    def bn(key: str, c: int) -> None:
        sd[key + '.weight'] = torch.rand(c, generator=gen) * 0.5 + 0.75
        sd[key + '.bias'] = torch.randn(c, generator=gen) * 0.1
        sd[key + '.running_mean'] = torch.randn(c, generator=gen) * 0.1
        sd[key + '.running_var'] = torch.rand(c, generator=gen) * 0.5 + 0.75
        sd[key + '.num_batches_tracked'] = torch.tensor(1000)

    stem, c2, c3, c4, c5 = PAPER[width]
    conv('conv1.0', stem, 3, 3), bn('conv1.1', stem)
    inp = stem
    for stage, repeats, oup in zip((2, 3, 4), (4, 8, 4), (c2, c3, c4)):
        half = oup // 2
        for i in range(repeats):
            p = f'stage{stage}.{i}'
            if i == 0:
                conv(p + '.branch1.0', inp, 1, 3), bn(p + '.branch1.1', inp)
                conv(p + '.branch1.2', half, inp, 1), bn(p + '.branch1.3', half)
            conv(p + '.branch2.0', half, inp if i == 0 else half, 1), bn(p + '.branch2.1', half)
            conv(p + '.branch2.3', half, 1, 3), bn(p + '.branch2.4', half)
            conv(p + '.branch2.5', half, half, 1), bn(p + '.branch2.6', half)
        inp = oup
    conv('conv5.0', c5, inp, 1), bn('conv5.1', c5)
    sd['fc.weight'] = torch.randn(1000, c5, generator=gen) * 0.01
    sd['fc.bias'] = torch.randn(1000, generator=gen) * 0.01
    return sd


def torchvision_forward(sd: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision ShuffleNetV2's forward written functionally: returns (conv5 features, logits)."""

    def bn(t: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(t, sd[p + '.running_mean'], sd[p + '.running_var'], sd[p + '.weight'], sd[p + '.bias'],
                            False, 0.0, 1e-5)

    def conv(t: torch.Tensor, p: str, stride: int = 1, depthwise: bool = False) -> torch.Tensor:
        w = sd[p + '.weight']
        return F.conv2d(t, w, stride=stride, padding=w.shape[-1] // 2, groups=t.shape[1] if depthwise else 1)

    def shuffle(t: torch.Tensor, groups: int) -> torch.Tensor:
        b, c, h, w = t.size()
        return t.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, -1, h, w)

    def branch2(t: torch.Tensor, p: str, stride: int) -> torch.Tensor:
        t = F.relu(bn(conv(t, p + '.0'), p + '.1'))
        t = bn(conv(t, p + '.3', stride, depthwise=True), p + '.4')
        return F.relu(bn(conv(t, p + '.5'), p + '.6'))

    x = F.relu(bn(conv(x, 'conv1.0', 2), 'conv1.1'))
    x = F.max_pool2d(x, 3, 2, 1)
    for stage, repeats in zip((2, 3, 4), (4, 8, 4)):
        for i in range(repeats):
            p = f'stage{stage}.{i}'
            if i == 0:
                b1 = bn(conv(x, p + '.branch1.0', 2, depthwise=True), p + '.branch1.1')
                b1 = F.relu(bn(conv(b1, p + '.branch1.2'), p + '.branch1.3'))
                out = torch.cat((b1, branch2(x, p + '.branch2', 2)), 1)
            else:
                x1, x2 = x.chunk(2, dim=1)
                out = torch.cat((x1, branch2(x2, p + '.branch2', 1)), 1)
            x = shuffle(out, 2)
    feat = F.relu(bn(conv(x, 'conv5.0'), 'conv5.1'))
    return feat, F.linear(feat.mean([2, 3]), sd['fc.weight'], sd['fc.bias'])


@pytest.mark.parametrize('width', [0.5, 1.0])
def test_torchvision_state_dict_loads_strict_and_matches(width: float) -> None:
    tv_sd = torchvision_state_dict(width)
    model = ShuffleNetV2(widen_factor=width, out_indices=(4,)).eval()
    backbone_sd = {k: v for k, v in tv_sd.items() if not k.startswith('fc.')}
    model.load_state_dict(backbone_sd, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref_feat, ref_logits = torchvision_forward(tv_sd, x)
        feat = model(x)[0]
    # a functional re-implementation with the same weights: rounding of another summation order, a few float32 eps
    # (1.2e-7) per layer of the magnitude S; allowed 2e-5 of max(1, S), while a wrong split, shuffle or weight
    # moves features by O(S)
    assert_close_scaled(feat, ref_feat, atol=2e-5)
    logits = F.linear(feat.mean([2, 3]), tv_sd['fc.weight'], tv_sd['fc.bias'])
    assert_close_scaled(logits, ref_logits, atol=2e-5)


def test_state_dict_keys_are_torchvision_keys_for_every_width() -> None:
    for width in PAPER:
        expected = {k: v.shape for k, v in torchvision_state_dict(width).items() if not k.startswith('fc.')}
        ours = {k: v.shape for k, v in ShuffleNetV2(widen_factor=width).state_dict().items()}
        assert ours == expected, width


def test_keys_do_not_depend_on_act_cfg() -> None:
    keys = set(ShuffleNetV2(widen_factor=0.5).state_dict())
    assert set(ShuffleNetV2(widen_factor=0.5, act_cfg=None).state_dict()) == keys
    hswish = ShuffleNetV2(widen_factor=0.5, act_cfg=dict(type='HSwish'))
    assert set(hswish.state_dict()) == keys
    unit = hswish.stage2[0]  # the activation slots: branch2.2 and .7, branch1.4
    assert all(isinstance(m, nn.Hardswish) for m in (unit.branch2[2], unit.branch2[7], unit.branch1[4]))
    plain = ShuffleNetV2(widen_factor=0.5, act_cfg=None)
    assert isinstance(plain.stage2[0].branch2[2], nn.Identity) and isinstance(plain.conv5[2], nn.Identity)


def test_real_torchvision_if_available() -> None:
    try:
        from torchvision.models import shufflenet_v2_x0_5
    except Exception as exc:  # noqa: BLE001  (a broken torchvision install raises more than ImportError)
        pytest.skip(f'torchvision not importable: {exc}')
    torch.manual_seed(0)
    tv = randomize_bn(shufflenet_v2_x0_5())
    model = ShuffleNetV2(widen_factor=0.5, out_indices=(4,)).eval()
    model.load_state_dict({k: v for k, v in tv.state_dict().items() if not k.startswith('fc.')}, strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref_logits = tv(x)
        logits = tv.fc(model(x)[0].mean([2, 3]))
    assert_close_scaled(logits, ref_logits, atol=2e-5)  # as above: torchvision's modules, the same weights


# ---------------------------------------------------------------- family arguments
@pytest.mark.parametrize('kwargs,argument', [
    (dict(widen_factor=0.3), 'widen_factor'),
    (dict(widen_factor=0.25), 'widen_factor'),
])
def test_bad_arguments(kwargs: dict, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        ShuffleNetV2(**kwargs)


# ---------------------------------------------------------------- layout='megvii' (official formulation)
@pytest.mark.parametrize('width', sorted(PAPER))
def test_megvii_layout_every_width(width: float) -> None:
    """Every width builds with the declared channels/strides of torchvision's layout; stage 2's first unit splits
    ``stem + (c2 - stem)`` like the official network, later units split halves."""
    model = ShuffleNetV2(widen_factor=width, layout='megvii', out_indices=(0, 1, 2, 3, 4))
    assert model.layout == 'megvii'
    assert model.out_channels == PAPER[width] and model.out_strides == (4, 8, 16, 32, 32)
    stem, c2, c3 = PAPER[width][:3]
    first = model.stage2[0]
    assert first.branch1[2].out_channels == stem and first.branch2[5].out_channels == c2 - stem
    assert first.branch2[0].out_channels == c2 // 2  # middle width of the official main branch
    assert model.stage3[0].branch1[2].out_channels == model.stage3[0].branch2[5].out_channels == c2
    assert model.stage3[1].branch2[0].in_channels == model.stage3[1].branch2[5].out_channels == c3 // 2


def test_megvii_layout_same_keys_other_shapes() -> None:
    """Module names are shared with torchvision's layout; only stage-2 shapes differ (and only above 0.5x)."""
    tv = {k: v.shape for k, v in ShuffleNetV2(widen_factor=1.0).state_dict().items()}
    mg = {k: v.shape for k, v in ShuffleNetV2(widen_factor=1.0, layout='megvii').state_dict().items()}
    assert set(tv) == set(mg)
    assert {k.split('.')[0] + '.' + k.split('.')[1] for k in tv if tv[k] != mg[k]} == {'stage2.0'}
    tv05 = {k: v.shape for k, v in ShuffleNetV2(widen_factor=0.5).state_dict().items()}
    assert tv05 == {k: v.shape for k, v in ShuffleNetV2(widen_factor=0.5, layout='megvii').state_dict().items()}


def test_megvii_units_route_channels_like_the_official_block() -> None:
    """Stride 1: ``cat(even, main(odd))``, no shuffle after; stride 2: ``cat(proj(x), main(x))``, no shuffle."""
    model = randomize_bn(ShuffleNetV2(widen_factor=0.5, layout='megvii'))
    unit = model.stage2[1]
    x = torch.randn(2, 48, 8, 8)
    with torch.no_grad():
        out = unit(x)
        # exact: the unit runs these very modules on the same channel values (only the copies differ)
        torch.testing.assert_close(out, torch.cat((x[:, 0::2], unit.branch2(x[:, 1::2])), 1), rtol=0, atol=0)
        down = model.stage3[0]
        torch.testing.assert_close(down(x), torch.cat((down.branch1(x), down.branch2(x)), 1), rtol=0, atol=0)
    # torchvision's layout at the same width computes another function with the same weights
    tv = ShuffleNetV2(widen_factor=0.5, out_indices=(4,)).eval()
    mg = ShuffleNetV2(widen_factor=0.5, layout='megvii', out_indices=(4,)).eval()
    tv.load_state_dict(model.state_dict())
    mg.load_state_dict(model.state_dict())
    img = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = tv(img)[0]
        assert (ref - mg(img)[0]).abs().max() > 0.1 * ref.abs().max()  # O(S), not rounding


@pytest.mark.parametrize('layout', ['Megvii', 'official', None])
def test_bad_layout(layout) -> None:
    with pytest.raises(ValueError, match=r"layout=.*allowed values: \['torchvision', 'megvii'\]"):
        ShuffleNetV2(layout=layout)
