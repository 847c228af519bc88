"""ShuffleNet V2 backbone: variants, torchvision layout and numerical equivalence, the mmdet backbone contract."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import contract_checks as cc
from shufflenet_det.models.backbones.shufflenet_v2 import SHUFFLENET_V2_ARCH, ShuffleNetV2

# Paper Table 5 = torchvision stages_out_channels: [stem, stage2, stage3, stage4, conv5]
PAPER = {0.5: (24, 48, 96, 192, 1024), 1.0: (24, 116, 232, 464, 1024), 1.5: (24, 176, 352, 704, 1024),
         2.0: (24, 244, 488, 976, 2048)}
SMALL = dict(type='ShuffleNetV2', widen_factor=0.5)


@pytest.mark.parametrize('width', sorted(PAPER))
def test_every_variant_outputs_match_declared(width: float) -> None:
    cfg = dict(type='ShuffleNetV2', widen_factor=width, out_indices=(0, 1, 2, 3, 4))
    cc.check_outputs_match_declared(cfg, size=64)
    model = cc.build(cfg)
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
    torch.testing.assert_close(feat, ref_feat, rtol=0, atol=1e-5)
    logits = F.linear(feat.mean([2, 3]), tv_sd['fc.weight'], tv_sd['fc.bias'])
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-5)


def test_state_dict_keys_are_torchvision_keys_for_every_width() -> None:
    for width in PAPER:
        expected = {k: v.shape for k, v in torchvision_state_dict(width).items() if not k.startswith('fc.')}
        ours = {k: v.shape for k, v in ShuffleNetV2(widen_factor=width).state_dict().items()}
        assert ours == expected, width


def test_keys_do_not_depend_on_act_cfg() -> None:
    keys = set(ShuffleNetV2(widen_factor=0.5).state_dict())
    assert set(ShuffleNetV2(widen_factor=0.5, act_cfg=None).state_dict()) == keys
    assert set(ShuffleNetV2(widen_factor=0.5, act_cfg=dict(type='HSwish')).state_dict()) == keys


def test_real_torchvision_if_available() -> None:
    try:
        from torchvision.models import shufflenet_v2_x0_5
    except Exception as exc:  # noqa: BLE001  (a broken torchvision install raises more than ImportError)
        pytest.skip(f'torchvision not importable: {exc}')
    torch.manual_seed(0)
    tv = cc.randomize_bn(shufflenet_v2_x0_5()).eval()
    model = ShuffleNetV2(widen_factor=0.5, out_indices=(4,)).eval()
    model.load_state_dict({k: v for k, v in tv.state_dict().items() if not k.startswith('fc.')}, strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref_logits = tv(x)
        logits = tv.fc(model(x)[0].mean([2, 3]))
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-5)


# ---------------------------------------------------------------- contract
@pytest.mark.parametrize('frozen', [-1, 0, 2, 4])
def test_frozen_stages(frozen: int) -> None:
    cc.check_frozen_stages(dict(SMALL, out_indices=(0, 1, 2, 3, 4)), frozen)


@pytest.mark.parametrize('out_indices', [(1, 2, 3), (2,)])
def test_groups_after_the_last_output_are_kept_but_frozen(out_indices: tuple) -> None:
    """conv5 (and stage4 for out_indices=(2,)) stay in the state dict for checkpoints but take no gradient."""
    cc.check_frozen_stages(dict(SMALL, out_indices=out_indices), -1)
    model = cc.build(dict(SMALL, out_indices=out_indices))
    assert any(k.startswith('conv5.') for k in model.state_dict())
    model.train()
    sum(o.sum() for o in model(torch.randn(1, 3, 64, 64))).backward()
    for name, p in model.named_parameters():  # every trainable parameter gets a gradient: DDP needs nothing more
        assert (p.grad is not None) == p.requires_grad, name


def test_norm_eval() -> None:
    cc.check_norm_eval(SMALL)


def test_with_cp() -> None:
    cc.check_with_cp(dict(SMALL, out_indices=(0, 1, 2, 3, 4)))


def test_deploy_fold() -> None:
    cc.check_deploy_fold(dict(SMALL, out_indices=(0, 1, 2, 3, 4)))


def test_norm_cfg_syncbn_and_gn() -> None:
    sync = cc.build(dict(SMALL, norm_cfg=dict(type='SyncBN'), norm_eval=True))
    norms = [m for m in sync.modules() if isinstance(m, _BatchNorm)]
    assert norms and all(isinstance(m, nn.SyncBatchNorm) for m in norms)
    sync.train()
    assert all(not m.training for m in norms)
    gn = cc.build(dict(SMALL, norm_cfg=dict(type='GN', num_groups=4), out_indices=(4,)))
    assert not any(isinstance(m, _BatchNorm) for m in gn.modules())
    assert set(gn.state_dict()) - {k for k in ShuffleNetV2(widen_factor=0.5).state_dict()
                                   if not k.endswith(('running_mean', 'running_var', 'num_batches_tracked'))} == set()
    assert gn(torch.randn(1, 3, 64, 64))[0].shape == (1, 1024, 2, 2)


@pytest.mark.parametrize('act', [dict(type='ReLU6'), dict(type='HSwish')])
def test_act_cfg(act: dict) -> None:
    model = cc.build(dict(SMALL, act_cfg=act, out_indices=(4,)))
    expected = {'ReLU6': nn.ReLU6, 'HSwish': nn.Hardswish}[act['type']]
    assert not any(type(m) is nn.ReLU for m in model.modules())
    # conv1 + conv5 + 2 per unit (branch2 pw, pw) + 1 per stride-2 unit (branch1 pw)
    assert sum(isinstance(m, expected) for m in model.modules()) == 2 + 16 * 2 + 3
    assert isinstance(model.stage2[0].branch2[2], expected) and isinstance(model.stage2[0].branch1[4], expected)
    assert model(torch.randn(1, 3, 64, 64))[0].shape == (1, 1024, 2, 2)


def test_init_cfg_pretrained_with_prefix(tmp_path) -> None:
    cc.check_init_cfg_pretrained_prefix(SMALL, tmp_path)


@pytest.mark.parametrize('kwargs,argument', [
    (dict(widen_factor=0.3), 'widen_factor'),
    (dict(widen_factor=0.25), 'widen_factor'),
    (dict(out_indices=(6,)), 'out_indices'),
    (dict(out_indices=()), 'out_indices'),
    (dict(frozen_stages=9), 'frozen_stages'),
    (dict(norm_cfg=dict(type='NoSuchNorm')), 'norm_cfg'),
])
def test_bad_arguments(kwargs: dict, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        ShuffleNetV2(**kwargs)


# ---------------------------------------------------------------- layout='megvii' (official formulation)
MEGVII = dict(type='ShuffleNetV2', widen_factor=1.0, layout='megvii')


@pytest.mark.parametrize('width', sorted(PAPER))
def test_megvii_layout_every_width(width: float) -> None:
    """Every width builds; outputs match the declared channels/strides (the same as torchvision's layout); stage 2's
    first unit splits ``stem + (c2 - stem)`` like the official network, later units split halves."""
    cfg = dict(MEGVII, widen_factor=width, out_indices=(0, 1, 2, 3, 4))
    cc.check_outputs_match_declared(cfg, size=32)
    model = cc.build(cfg)
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
    model = cc.randomize_bn(ShuffleNetV2(widen_factor=0.5, layout='megvii')).eval()
    unit = model.stage2[1]
    x = torch.randn(2, 48, 8, 8)
    with torch.no_grad():
        out = unit(x)
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
        assert (tv(img)[0] - mg(img)[0]).abs().max() > 1e-3


def test_megvii_layout_with_cp() -> None:
    cc.check_with_cp(dict(MEGVII, out_indices=(0, 1, 2, 3, 4)))


def test_megvii_layout_deploy_fold() -> None:
    cc.check_deploy_fold(dict(MEGVII, out_indices=(0, 1, 2, 3, 4)))


def test_megvii_layout_frozen_stages() -> None:
    cc.check_frozen_stages(dict(MEGVII, widen_factor=0.5, out_indices=(0, 1, 2, 3, 4)), 2)


@pytest.mark.parametrize('layout', ['Megvii', 'official', None])
def test_bad_layout(layout) -> None:
    with pytest.raises(ValueError, match=r"layout=.*allowed values: \['torchvision', 'megvii'\]"):
        ShuffleNetV2(layout=layout)
