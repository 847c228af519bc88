"""The mmdet backbone contract of every family (ShuffleNet V1, V2 in both layouts, DetNAS, ShuffleNetV2+, OneShot,
ShuffleNetV2.Large / ExLarge, ESNet),
checked on real outputs with tiny inputs.

``out_channels`` / ``out_strides`` against the outputs of every variant; ``out_indices`` / ``frozen_stages`` / layer
config validation; ``frozen_stages``; the output stages after the last output index kept but frozen; ``norm_eval``;
``with_cp`` (same outputs and gradients); ``switch_to_deploy`` (no BN left, outputs within 1e-5); ``norm_cfg`` (SyncBN,
GN) and ``act_cfg``; ``init_cfg`` Pretrained with a prefix. The family test modules keep what is specific to a family
(architecture tables, equivalence with the official implementations, family arguments).
"""
from __future__ import annotations

import inspect
import itertools

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from helpers import assert_close_scaled, build_backbone, randomize_bn
from shufflenet_det.models.backbones.archs import (
    DETNAS_ARCHS,
    ESNET_ARCHS,
    SHUFFLENET_V2_LARGE_ARCHS,
    SHUFFLENET_V2_PLUS_ARCHS,
    LargeArch,
    SearchedArch,
    parse_large_arch,
)
from shufflenet_det.models.backbones.esnet import ESNet, ESSqueezeExcite, es_unit
from shufflenet_det.models.backbones.shufflenet_v1 import SHUFFLENET_V1_ARCH
from shufflenet_det.models.backbones.shufflenet_v2 import SHUFFLENET_V2_ARCH
from shufflenet_det.models.backbones.shufflenet_v2_large import SigmoidSqueezeExcite
from shufflenet_det.models.backbones.spos_blocks import SqueezeExcite
from shufflenet_det.models.layers import count_batchnorm

pytestmark = pytest.mark.compat  # also run on the OpenMMLab-standard stack (make test-openmmlab)

# One small member of each family (V2 in both layouts); GN_GROUPS divides every channel count of that member.
FAMILIES: dict[str, dict] = {
    'v1': dict(type='ShuffleNetV1', groups=3, widen_factor=0.5),
    'v2-torchvision': dict(type='ShuffleNetV2', widen_factor=0.5),
    'v2-megvii': dict(type='ShuffleNetV2', widen_factor=1.0, layout='megvii'),  # stage 2 splits 24 + 92
    'detnas': dict(type='DetNAS', arch='COCO-FPN-300M'),
    'v2plus': dict(type='ShuffleNetV2Plus', arch='Small'),
    'oneshot': dict(type='OneShot'),
    # ShuffleNetV2.Large / ExLarge are 125M / 255M parameters: narrow and shallow networks of both layouts
    'large': dict(type='ShuffleNetV2Large', arch=dict(base='Large', stem_channels=(8, 8, 16),
                                                      stage_channels=(16, 32, 48, 64), repeats=(2, 1, 2, 1),
                                                      groups=2, last_channels=32)),
    'exlarge': dict(type='ShuffleNetV2Large', arch=dict(base='ExLarge', stem_channels=(8, 8, 16),
                                                        stage_channels=(16, 32, 48, 64), repeats=(2, 1, 2, 1),
                                                        groups=2)),
    # ESNet (PP-PicoDet): a narrow, shallow encoding (stages 32 / 64 / 128, main widths 16 / 32 / 64)
    'esnet': dict(type='ESNet', arch=dict(scale=0.25, repeats=(1, 2, 1), channel_ratio=(0.5, 0.5, 0.5, 0.5))),
}
GN_GROUPS = {'v1': 2, 'v2-torchvision': 4, 'v2-megvii': 2, 'detnas': 2, 'v2plus': 2, 'oneshot': 1,  # OneShot: 25 ch
             'large': 4, 'exlarge': 4, 'esnet': 4}
FAMILY_IDS = list(FAMILIES)


def num_outputs(cfg: dict) -> int:
    """ShuffleNet V1, ShuffleNetV2.ExLarge and ESNet have no last conv (outputs 0-3); the other families have one
    (4)."""
    if cfg['type'] == 'ShuffleNetV2Large':
        return parse_large_arch(cfg.get('arch', 'Large')).num_outputs
    return 4 if cfg['type'] in ('ShuffleNetV1', 'ESNet') else 5


def all_outputs(cfg: dict) -> dict:
    return dict(cfg, out_indices=tuple(range(num_outputs(cfg))))


# ---------------------------------------------------------------- out_channels / out_strides of every variant
_CUSTOM = dict(stem_channels=8, stage_channels=[16, 32, 48, 64], last_channels=96, repeats=[1, 2, 1, 2],
               choices=['xception_3x3', 0, 1, 2, 3, 'shufflenet_7x7'])
VARIANTS = (
    [pytest.param(dict(type='ShuffleNetV1', groups=g, widen_factor=w), 64, id=f'v1-g{g}-{w}x')
     for g, w in itertools.product(SHUFFLENET_V1_ARCH['groups'], SHUFFLENET_V1_ARCH['widen_factors'])]
    + [pytest.param(dict(type='ShuffleNetV2', widen_factor=w, layout=layout), 64, id=f'v2-{layout}-{w}x')
       for layout, w in itertools.product(SHUFFLENET_V2_ARCH['layouts'], SHUFFLENET_V2_ARCH['channels'])]
    # the 3.8G DetNAS is heavy: a tiny input only
    + [pytest.param(dict(type='DetNAS', arch=a), 32 if a == 'COCO-FPN-3.8G' else 64, id=f'detnas-{a}')
       for a in DETNAS_ARCHS]
    + [pytest.param(dict(type='ShuffleNetV2Plus', arch=a), 64, id=f'v2plus-{a}') for a in SHUFFLENET_V2_PLUS_ARCHS]
    + [pytest.param(dict(type='OneShot'), 64, id='oneshot-published'),
       pytest.param(dict(type='DetNAS', arch=_CUSTOM), 32, id='detnas-dict'),
       pytest.param(dict(type='ShuffleNetV2Plus', arch=dict(_CUSTOM, stage_acts=['ReLU', 'ReLU', 'HSwish', 'HSwish'],
                                                            se_stages=[False, False, False, True])),
                    32, id='v2plus-dict'),
       pytest.param(dict(type='OneShot', arch=dict(_CUSTOM, scale_ids=[0, 1, 2, 3, 4, 5],
                                                   scale_list=[0.5, 1.0, 1.5, 2.0, 0.25, 0.75])),
                    32, id='oneshot-dict')]
    # the real ShuffleNetV2.Large / ExLarge (12.7 / 46.2 GFLOPs at 224): a tiny input only
    + [pytest.param(dict(type='ShuffleNetV2Large', arch=a), 32, id=f'large-{a}') for a in SHUFFLENET_V2_LARGE_ARCHS]
    + [pytest.param(dict(type='ESNet', arch=a), 64, id=f'esnet-{a}') for a in ESNET_ARCHS]
)


def check_outputs_match_declared(cfg: dict, size: int = 64) -> None:
    """``out_channels``/``out_strides`` equal the shapes of the real outputs, in ``out_indices`` order."""
    model = build_backbone(cfg).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, size, size))
    assert isinstance(outs, tuple) and len(outs) == len(model.out_indices)
    assert len(model.out_channels) == len(model.out_strides) == len(outs)
    for out, ch, stride in zip(outs, model.out_channels, model.out_strides):
        assert out.shape[1] == ch, (cfg, out.shape, ch)
        assert out.shape[2] == size // stride and out.shape[3] == size // stride, (cfg, out.shape, stride)


@pytest.mark.parametrize('cfg,size', VARIANTS)
def test_outputs_match_declared(cfg: dict, size: int) -> None:
    check_outputs_match_declared(all_outputs(cfg), size)


@pytest.mark.parametrize('family', FAMILY_IDS)
def test_out_indices_subset_sorted_and_stops_early(family: str) -> None:
    """A subset given in any order is returned sorted, and nothing after the last requested output runs."""
    cfg = FAMILIES[family]
    full = build_backbone(all_outputs(cfg))
    subset = build_backbone(dict(cfg, out_indices=(3, 1)))
    assert subset.out_indices == (1, 3)
    assert subset.out_channels == (full.out_channels[1], full.out_channels[3])
    assert subset.out_strides == (8, 32)
    check_outputs_match_declared(dict(cfg, out_indices=(3, 1)))
    for out_indices, expect_run in (((1,), False), (all_outputs(cfg)['out_indices'], True)):
        model = build_backbone(dict(cfg, out_indices=out_indices)).eval()
        later = [name for names in model.output_stages[2:] for name in names]
        ran: list[str] = []
        for name in later:
            getattr(model, name).register_forward_hook(lambda m, i, o, name=name, ran=ran: ran.append(name))
        with torch.no_grad():
            model(torch.randn(1, 3, 64, 64))
        assert ran == (later if expect_run else [])


# ---------------------------------------------------------------- argument validation
def _bad_contract_arguments(cfg: dict) -> list[tuple[dict, str]]:
    n = num_outputs(cfg)
    return [
        (dict(out_indices=(n,)), 'out_indices'),
        (dict(out_indices=(6,)), 'out_indices'),
        (dict(out_indices=()), 'out_indices'),
        (dict(out_indices=(1, 1)), 'out_indices'),
        (dict(out_indices=1), 'out_indices'),
        (dict(frozen_stages=n), 'frozen_stages'),
        (dict(frozen_stages=9), 'frozen_stages'),
        (dict(frozen_stages=-2), 'frozen_stages'),
        (dict(norm_cfg=dict(type='NoSuchNorm')), 'norm_cfg'),
        (dict(act_cfg=dict(type='NoSuchAct')), 'act_cfg'),
        (dict(conv_cfg=dict(type='NoSuchConv')), 'conv_cfg'),
    ]


@pytest.mark.parametrize('family,kwargs,argument', [
    pytest.param(family, kwargs, argument, id=f'{family}-{"-".join(f"{k}={v}" for k, v in kwargs.items())}')
    for family in FAMILY_IDS for kwargs, argument in _bad_contract_arguments(FAMILIES[family])])
def test_bad_contract_arguments_raise_naming_the_argument(family: str, kwargs: dict, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        build_backbone(dict(FAMILIES[family], **kwargs))


# ---------------------------------------------------------------- frozen_stages, unused output stages, norm_eval
def check_frozen_stages(cfg: dict, frozen: int) -> None:
    """Frozen output stages have no trainable parameter and their BN (the stem's too) stays in eval after train().

    The output stages after the last output index never run and are frozen alike (so DDP needs no
    find_unused_parameters).
    """
    model = build_backbone(dict(cfg, frozen_stages=frozen))
    model.train()
    last = max(model.out_indices)
    assert model.unused_output_stages == tuple(range(last + 1, model.num_outputs))
    for idx, names in enumerate(model.output_stages):
        for name in names:
            module = getattr(model, name)
            params = list(module.parameters())
            bns = [m for m in module.modules() if isinstance(m, _BatchNorm)]
            if idx <= frozen or idx > last:
                assert all(not p.requires_grad for p in params), (name, idx)
                assert all(not bn.training for bn in bns), (name, idx)
            else:
                assert all(p.requires_grad for p in params), (name, idx)
                assert all(bn.training for bn in bns), (name, idx)


@pytest.mark.parametrize('outputs', ['default', 'all'])
@pytest.mark.parametrize('frozen', [-1, 0, 1, 2, 'last'])
@pytest.mark.parametrize('family', FAMILY_IDS)
def test_frozen_stages(family: str, frozen: int | str, outputs: str) -> None:
    cfg = FAMILIES[family] if outputs == 'default' else all_outputs(FAMILIES[family])
    check_frozen_stages(cfg, num_outputs(cfg) - 1 if frozen == 'last' else frozen)


@pytest.mark.parametrize('out_indices', [(1, 2, 3), (0, 1, 2), (2,)])
@pytest.mark.parametrize('family', FAMILY_IDS)
def test_output_stages_after_the_last_output_are_kept_but_frozen(family: str, out_indices: tuple) -> None:
    """E.g. ShuffleNet V2's conv5 (and stage4 for out_indices=(2,)) stay in the state dict for checkpoints but take
    no gradient; every trainable parameter gets one, so DDP needs nothing more."""
    cfg = dict(FAMILIES[family], out_indices=out_indices)
    check_frozen_stages(cfg, -1)
    model = build_backbone(cfg)
    full_keys = set(build_backbone(all_outputs(FAMILIES[family])).state_dict())
    assert set(model.state_dict()) == full_keys
    for idx in model.unused_output_stages:
        for name in model.output_stages[idx]:
            assert any(k.startswith(name + '.') for k in full_keys), name
    model.train()
    sum(o.sum() for o in model(torch.randn(2, 3, 64, 64))).backward()  # batch 2: the SE's BN sees 1x1 maps
    for name, p in model.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name


@pytest.mark.parametrize('family', FAMILY_IDS)
def test_norm_eval(family: str) -> None:
    """With norm_eval every _BatchNorm stays in eval mode after train(); running stats do not move."""
    model = build_backbone(dict(FAMILIES[family], norm_eval=True))
    model.train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not bn.training for bn in bns)
    before = [bn.running_mean.clone() for bn in bns]
    model(torch.randn(2, 3, 32, 32))
    # exact: a BN in eval mode never writes its running statistics (a copy compared with the untouched original)
    assert all(torch.equal(a, bn.running_mean) for a, bn in zip(before, bns))


# ---------------------------------------------------------------- with_cp, BN folding
@pytest.mark.parametrize('family', FAMILY_IDS)
def test_with_cp_same_outputs_and_gradients(family: str) -> None:
    cfg = all_outputs(FAMILIES[family])
    torch.manual_seed(0)
    ref = build_backbone(dict(cfg, with_cp=False))
    ckp = build_backbone(dict(cfg, with_cp=True))
    ckp.load_state_dict(ref.state_dict())
    ref.train(), ckp.train()
    x = torch.randn(2, 3, 32, 32)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out1, out2 = ref(x1), ckp(x2)
    # Checkpointing runs the same ops on the same tensors (outputs normally bit-identical), but the recomputation
    # runs under no_grad and its backward is another autograd graph, where a kernel may pick another algorithm or
    # accumulation order. Allowed: 1e-5 of the tensor's magnitude (max(1, S)), i.e. ~80 float32 eps (1.2e-7): a
    # few last-bit roundings per op over the tens of layers of these networks; skipping a block or a BN changes
    # outputs and gradients by a sizeable fraction of S.
    for a, b in zip(out1, out2):
        assert_close_scaled(b, a, atol=1e-5)
    sum(o.sum() for o in out1).backward()
    sum(o.sum() for o in out2).backward()
    assert_close_scaled(x2.grad, x1.grad, atol=1e-5, msg='input grad')
    for (name, p1), p2 in zip(ref.named_parameters(), ckp.parameters()):
        assert_close_scaled(p2.grad, p1.grad, atol=1e-5, msg=name)


#: Folded vs unfolded BN compute different float32 sums: each folded weight ``w * gamma / sqrt(var + eps)`` is
#: rounded once more (1 ulp, eps 1.2e-7 relative) and the conv sums its terms with the folded weights, in a kernel
#: order that differs between CPUs. Per layer that is a few eps of the magnitude of the summed terms; over the
#: <= 50 layers of these networks ~1e-6 of the output magnitude S, measured at most 3.5e-7 of max(1, S). 2e-5 of
#: max(1, S) stays over an order of magnitude above that and far below a wrong fold (randomize_bn's statistics are
#: 10 % away from identity: a dropped mean, variance or gamma moves the outputs by 10 % of S and more).
FOLD_ATOL = 2e-5
FOLD_VARIANTS = FAMILY_IDS + ['v1-g1', 'v1-g8']  # ungrouped and 8-group V1 besides the family member (3 groups)


def _fold_cfg(variant: str) -> dict:
    if variant.startswith('v1-g'):
        return dict(FAMILIES['v1'], groups=int(variant[len('v1-g'):]))
    return FAMILIES[variant]


@pytest.mark.parametrize('variant', FOLD_VARIANTS)
def test_switch_to_deploy_folds_every_bn_within_1e_5(variant: str) -> None:
    model = randomize_bn(build_backbone(all_outputs(_fold_cfg(variant))))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        assert model.switch_to_deploy() is model and model.deployed and not model.training
        after = model(x)
    assert count_batchnorm(model) == 0
    for a, b in zip(before, after):
        assert_close_scaled(b, a, atol=FOLD_ATOL)


@pytest.mark.parametrize('family', ['v1', 'v2-torchvision', 'v2plus'])
def test_switch_to_deploy_folds_bn_without_affine_parameters(family: str) -> None:
    """``affine=False`` BN (no weight / bias) folds too; BN without running statistics cannot be folded."""
    cfg = all_outputs(FAMILIES[family])
    model = randomize_bn(build_backbone(dict(cfg, norm_cfg=dict(type='BN', affine=False))))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        after = model.switch_to_deploy()(x)
    assert count_batchnorm(model) == 0
    for a, b in zip(before, after):
        assert_close_scaled(b, a, atol=FOLD_ATOL)
    batch_stats = build_backbone(dict(cfg, norm_cfg=dict(type='BN', track_running_stats=False)))
    with pytest.raises(ValueError, match='track_running_stats=False'):
        batch_stats.switch_to_deploy()


# ---------------------------------------------------------------- norm_cfg, act_cfg
@pytest.mark.parametrize('family', FAMILY_IDS)
def test_norm_cfg_syncbn_with_norm_eval(family: str) -> None:
    model = build_backbone(dict(FAMILIES[family], norm_cfg=dict(type='SyncBN'), norm_eval=True))
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert norms and all(isinstance(m, nn.SyncBatchNorm) for m in norms)
    model.train()
    assert all(not m.training for m in norms)


@pytest.mark.parametrize('family', FAMILY_IDS)
def test_norm_cfg_gn_replaces_every_bn(family: str) -> None:
    """GN takes the place of every BN (same count, same state-dict keys less the BN buffers) and runs."""
    cfg = all_outputs(FAMILIES[family])
    bn_model = build_backbone(cfg)
    gn = build_backbone(dict(cfg, norm_cfg=dict(type='GN', num_groups=GN_GROUPS[family])))
    assert not any(isinstance(m, _BatchNorm) for m in gn.modules())
    assert sum(isinstance(m, nn.GroupNorm) for m in gn.modules()) == count_batchnorm(bn_model)
    buffers = ('running_mean', 'running_var', 'num_batches_tracked')
    assert set(gn.state_dict()) == {k for k in bn_model.state_dict() if not k.endswith(buffers)}
    check_outputs_match_declared(dict(cfg, norm_cfg=dict(type='GN', num_groups=GN_GROUPS[family])))


def _expected_activations(family: str, model: nn.Module) -> int:
    """Activations an ``act_cfg`` produces (outside squeeze-excitations, which keep their ReLU)."""
    if family == 'v1':
        return 1 + 16 * 2  # stem + per unit: after the first pw and after the merge
    if family.startswith('v2-'):
        return 2 + 16 * 2 + 3  # conv1 + conv5 + 2 per unit (branch2 pw, pw) + 1 per stride-2 unit (branch1 pw)
    if family in ('large', 'exlarge'):
        large: LargeArch = model.arch
        units = sum(large.repeats)
        # 3 stem convs + 2 in each main branch + the merge (every unit in Large, the residual units in ExLarge)
        # + the projections (ExLarge) + Large's 3 down convs and last conv / ExLarge's 4 stage-closing convs
        merges = units if large.merge == 'concat' else units - 4
        return (3 + 2 * units + merges + 4 * large.proj_act + 3 * large.down_conv + 4 * large.stage_conv
                + (large.last_channels is not None))
    if isinstance(model, ESNet):
        # stem + 2 per stride-1 unit (conv_pw, conv_linear) + 5 per stride-2 unit (conv_linear_1, conv_pw_2,
        # conv_linear_2, conv_dw_mv1, conv_pw_mv1)
        return 1 + 2 * sum(model.arch.repeats) + 3 * len(model.arch.repeats)
    arch: SearchedArch = model.arch
    # stem + conv_last + one after each pw of a unit's main branch (3 in xception, else 2) + the stride-2 projections
    return 2 + sum(3 if c == 'xception_3x3' else 2 for c in arch.choices) + len(arch.repeats)


def _outside_se(model: nn.Module) -> list[nn.Module]:
    inside = {id(m) for se in model.modules() if isinstance(se, (SqueezeExcite, SigmoidSqueezeExcite, ESSqueezeExcite))
              for m in se.modules()}
    return [m for m in model.modules() if id(m) not in inside]


@pytest.mark.parametrize('act', ['ReLU6', 'HSwish'])
@pytest.mark.parametrize('family', FAMILY_IDS)
def test_act_cfg_replaces_every_activation(family: str, act: str) -> None:
    cfg = all_outputs(FAMILIES[family])
    model = build_backbone(dict(cfg, act_cfg=dict(type=act)))
    expected = {'ReLU6': nn.ReLU6, 'HSwish': nn.Hardswish}[act]
    modules = _outside_se(model)
    assert not any(type(m) is nn.ReLU for m in modules)
    if act == 'ReLU6':
        assert not any(isinstance(m, nn.Hardswish) for m in modules)
    assert sum(isinstance(m, expected) for m in modules) == _expected_activations(family, model)
    check_outputs_match_declared(dict(cfg, act_cfg=dict(type=act)))


# ---------------------------------------------------------------- init_cfg
@pytest.mark.parametrize('family', FAMILY_IDS)
def test_init_cfg_pretrained_with_prefix(family: str, tmp_path) -> None:
    """``init_cfg=dict(type='Pretrained', prefix='backbone.')`` loads the backbone part of a detector checkpoint."""
    cfg: dict = FAMILIES[family]
    src = randomize_bn(build_backbone(cfg), with_weights=True)
    ckpt = tmp_path / 'detector.pth'
    head: dict[str, torch.Tensor] = {'bbox_head.conv.weight': torch.zeros(1)}
    torch.save({'state_dict': {**{'backbone.' + k: v for k, v in src.state_dict().items()}, **head}}, ckpt)
    model = build_backbone(dict(cfg, init_cfg=dict(type='Pretrained', checkpoint=str(ckpt), prefix='backbone.')))
    model.init_weights()
    for k, v in src.state_dict().items():  # exact: loading copies the saved tensors
        assert torch.equal(model.state_dict()[k], v), k


@pytest.mark.parametrize('family', FAMILY_IDS)
def test_signature_lists_every_contract_argument(family: str) -> None:
    """A family constructor forwards the contract arguments; its signature still names them (keyword-only), so
    ``help()`` and argument checks such as tools/model_converters/convert_weights.py see every accepted argument."""
    cls = type(build_backbone(FAMILIES[family]))
    params = inspect.signature(cls).parameters
    contract = ('out_indices', 'frozen_stages', 'conv_cfg', 'norm_cfg', 'act_cfg', 'norm_eval', 'with_cp', 'init_cfg')
    assert set(contract) <= set(params)
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    assert params['frozen_stages'].kind is inspect.Parameter.KEYWORD_ONLY and params['frozen_stages'].default == -1
    with pytest.raises(TypeError, match='no_such_argument'):
        cls(no_such_argument=1)


@pytest.mark.parametrize('unit', ['v1', 'v2', 'searched', 'large', 'esnet'])
def test_units_check_stride_and_width(unit: str) -> None:
    from shufflenet_det.models.backbones.shufflenet_v1 import ShuffleV1Unit
    from shufflenet_det.models.backbones.shufflenet_v2 import ShuffleV2Unit
    from shufflenet_det.models.backbones.shufflenet_v2_large import LargeShuffleUnit
    from shufflenet_det.models.backbones.spos_blocks import SearchedShuffleBlock
    build = {'v1': lambda i, o, s: ShuffleV1Unit(i, o, 3, s),
             'v2': lambda i, o, s: ShuffleV2Unit(i, o, s),
             'searched': lambda i, o, s: SearchedShuffleBlock(i, o, s, 'shufflenet_3x3', o // 2),
             # only the first unit of a stage (no residual) may have stride 2
             'large': lambda i, o, s: LargeShuffleUnit(i, o, s, s != 1, parse_large_arch('Large')),
             'esnet': lambda i, o, s: es_unit(i, o // 2, o, s)}[unit]
    with pytest.raises(ValueError, match=r'stride=3 is not supported; allowed values: \[1, 2\]'):
        build(24, 48, 3)
    with pytest.raises(ValueError, match='stride-1 unit needs in_channels == out_channels, got 24 and 48'):
        build(24, 48, 1)
    build(48, 48, 1), build(24, 48, 2)


def test_every_family_is_covered() -> None:
    """Each registered backbone of the package has a member in FAMILIES (and V2 both layouts).

    Not the DetNAS supernet: the choices off its active path take no gradient by design (its configs set DDP's
    find_unused_parameters), which the kept-but-frozen contract here forbids; tests/nas/test_nas_supernet.py checks the
    rest of the contract on it (out_channels / strides, frozen_stages, switch_to_deploy)."""
    from shufflenet_det.models.backbones import __all__ as exported
    assert {cfg['type'] for cfg in FAMILIES.values()} == set(exported) - {'ShuffleBackboneBase', 'DetNASSupernet'}
    assert {cfg.get('layout', 'torchvision') for cfg in FAMILIES.values() if cfg['type'] == 'ShuffleNetV2'} == \
        set(SHUFFLENET_V2_ARCH['layouts'])
