"""ShuffleNetV2.Large / ExLarge: the published tables against the official networks (structure, parameters,
multiply-adds), the layout flags, the Megvii converter (round trips against a re-implementation of the official
networks, refusals, the command line) and encoding validation. The mmdet backbone contract is in
``test_backbone_contract.py`` (narrow members of both layouts, and the real networks' output shapes); the published
complexity of the real networks in ``test_flops.py`` (PUBLISHED_VARIANTS).

The real networks have 125M / 255M parameters: they are only built on the ``meta`` device here (no memory, no
compute: structure, parameter count and the converter's key map at the published depths); everything numerical runs
on shallow, narrow networks of the same layouts.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import shufflenet_det  # noqa: F401
from helpers import assert_close_scaled, build_backbone, load_script, randomize_bn
from official_refs.megvii_large import OfficialExLarge, OfficialLarge, aux_keys, official_checkpoint, randomize_
from shufflenet_det.converters import (
    ConversionError,
    available_converters,
    convert_checkpoint,
    megvii_large,
    target_backbone,
)
from shufflenet_det.models.backbones import ShuffleNetV2Large
from shufflenet_det.models.backbones.archs import SHUFFLENET_V2_LARGE_ARCHS, parse_large_arch
from shufflenet_det.models.backbones.shufflenet_v2_large import (
    LargeShuffleUnit,
    ShuffleNetV2LargeHead,
    SigmoidSqueezeExcite,
)
from shufflenet_det.utils.checkpoint import read_state_dict

#: The cheap tests also run on the OpenMMLab-standard stack (make test-openmmlab).
COMPAT = pytest.mark.compat

# Shallow, narrow networks of both layouts for the numerical checks (the official re-implementation takes the same
# numbers; aux = widths of its auxiliary heads). The Large round trip keeps 23 units in stage 3: Large names its units
# by letter (``4a``..``4w``). The key map at the published depths is checked on the meta device.
SHALLOW = {
    'Large': dict(base='Large', stem_channels=(8, 8, 16), stage_channels=(16, 32, 64, 128), repeats=(2, 2, 3, 2),
                  groups=4, last_channels=48),
    'ExLarge': dict(base='ExLarge', stem_channels=(8, 16, 32), stage_channels=(40, 80, 160, 320), repeats=(2, 2, 3, 2),
                    groups=4),
}
ROUND_TRIP = {'Large': (dict(SHALLOW['Large'], repeats=(2, 2, 23, 2)), dict(aux=(8, 16, 32))),
              'ExLarge': (SHALLOW['ExLarge'], dict(aux=(16, 32, 64)))}


def official(arch: dict, aux: tuple = (8, 16, 32), n_class: int = 10) -> nn.Module:
    """The official network of a (validated) dict encoding."""
    spec = parse_large_arch(arch)
    common = dict(stem=spec.stem_channels, stages=spec.stage_channels, repeats=spec.repeats, groups=spec.groups,
                  aux=aux, n_class=n_class)
    if spec.base == 'Large':
        return OfficialLarge(last=spec.last_channels, eps=spec.bn_eps, **common)
    return OfficialExLarge(**common)


def all_outputs(arch) -> dict:
    return dict(arch=arch, out_indices=tuple(range(parse_large_arch(arch).num_outputs)))


def write_official(tmp_path: Path, arch: dict, seed: int = 0, **kwargs) -> tuple[nn.Module, Path]:
    ref = randomize_(official(arch, **kwargs), seed=seed)
    path = tmp_path / f'official_{arch["base"]}.pth'
    torch.save(official_checkpoint(ref), path)
    return ref, path


# ---------------------------------------------------------------- the published networks
@COMPAT
@pytest.mark.parametrize('arch', list(SHUFFLENET_V2_LARGE_ARCHS))
def test_published_network_equals_the_official_one(arch: str) -> None:
    """Same structure and parameters as the official network.py (built on the meta device: no memory, no compute):
    every official conv / BN / SE weight has a counterpart of the same size, and backbone + classifier have
    exactly the official parameters less the auxiliary heads (125,120,936 / 255,374,504)."""
    with torch.device('meta'):
        ours = ShuffleNetV2Large(arch=arch, out_indices=tuple(range(parse_large_arch(arch).num_outputs)))
        theirs = OfficialLarge() if arch == 'Large' else OfficialExLarge()
    spec = ours.arch
    assert [len(getattr(ours, f'stage{i}')) for i in range(1, 5)] == [r + spec.stage_conv for r in spec.repeats]
    if arch == 'Large':
        assert ours.out_channels == (256, 512, 1024, 2048, 1280) and ours.out_strides == (4, 8, 16, 32, 32)
        assert ours.conv_last[0].kernel_size == (3, 3)
    else:
        assert ours.out_channels == (320, 640, 1280, 2560) and ours.out_strides == (4, 8, 16, 32)
        assert not hasattr(ours, 'conv_last')
    head = ShuffleNetV2LargeHead(ours.out_channels[-1], 1000)
    official_params = sum(p.numel() for n, p in theirs.named_parameters() if not n.startswith('predict_'))
    assert sum(p.numel() for p in ours.parameters()) + sum(p.numel() for p in head.parameters()) == official_params
    # every official tensor of the backbone has a counterpart with the same number of elements
    names = megvii_large.official_module_names(ours)
    official_sd = theirs.state_dict()
    for key, value in ours.state_dict().items():
        module, _, param = key.rpartition('.')
        assert official_sd[f'{names[module]}.{param}'].numel() == value.numel(), key
    # the official BN eps: 1e-9 in Large, PyTorch's default in ExLarge
    eps = {m.eps for m in ours.modules() if isinstance(m, nn.BatchNorm2d)}
    assert eps == {1e-9 if arch == 'Large' else 1e-5} == {m.eps for m in theirs.modules()
                                                          if isinstance(m, nn.BatchNorm2d)}


@COMPAT
def test_published_variants_registered_for_flops_check() -> None:
    """Both networks are in PUBLISHED_VARIANTS (tests/analysis/test_flops.py counts them at 224 against the official
    counts) with their classifier head."""
    from shufflenet_det.analysis import published_variants
    from shufflenet_det.analysis.complexity import CLASSIFIER_HEADS

    variants = {v.name: v for v in published_variants(['ShuffleNetV2Large'])}
    assert set(variants) == {'ShuffleNetV2.Large', 'ShuffleNetV2.ExLarge'}
    assert variants['ShuffleNetV2.Large'].flops == 12780.7e6 and variants['ShuffleNetV2.ExLarge'].params == 255.37e6
    assert all(v.classifier_bias and v.rel_tol <= 0.01 for v in variants.values())
    assert CLASSIFIER_HEADS['ShuffleNetV2Large'](1280, 1000, True).fc.in_features == 1280


@pytest.mark.parametrize('base', ['Large', 'ExLarge'])
def test_classifier_counts_equal_the_official_network(base: str) -> None:
    """With the head, the counted multiply-adds and parameters equal an independent count of the official network
    (forward hooks on every conv / linear, the auxiliary heads excluded): the SE layers count like the official
    linear layers."""
    from shufflenet_det.analysis import classifier_complexity

    arch = SHALLOW[base]
    ref = official(arch, n_class=1000).eval()
    macs = 0

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        macs += output.numel() * module.weight[0].numel()

    for name, m in ref.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and not name.startswith('predict_'):
            m.register_forward_hook(hook)
    with torch.no_grad():
        ref(torch.randn(1, 3, 64, 64))
    ours = classifier_complexity(dict(type='ShuffleNetV2Large', arch=arch), 64)
    assert ours['flops'] == macs
    assert ours['params'] == sum(p.numel() for n, p in ref.named_parameters() if not n.startswith('predict_'))


# ---------------------------------------------------------------- layout
@COMPAT
def test_large_and_exlarge_layouts() -> None:
    large = ShuffleNetV2Large(arch=SHALLOW['Large'], out_indices=(0, 1, 2, 3, 4))
    ex = ShuffleNetV2Large(arch=SHALLOW['ExLarge'])
    assert large.output_stages == (('conv1', 'maxpool', 'stage1'), ('stage2',), ('stage3',), ('stage4',),
                                   ('conv_last',))
    assert ex.num_outputs == 4 and ex.output_stages[-1] == ('stage4',)
    assert [large.conv1[i].stride for i in (0, 3, 6)] == [(2, 2), (1, 1), (1, 1)]
    for model, main_convs, proj_len in ((large, 3, 2), (ex, 4, 3)):
        for s in range(1, 5):
            stage = getattr(model, f'stage{s}')
            units = [u for u in stage if isinstance(u, LargeShuffleUnit)]
            assert [u.first for u in units] == [True] + [False] * (len(units) - 1)
            assert [u.stride for u in units] == [1 if s == 1 else 2] + [1] * (len(units) - 1)
            first = units[0]
            assert len(first.branch_proj) == proj_len and first.branch_proj[0].kernel_size == (3, 3)
            assert first.with_down == (model is large and s > 1)
            for u in units:
                convs = [m for m in u.branch_main if isinstance(m, nn.Conv2d)]
                assert len(convs) == main_convs and convs[1].groups == 4 and convs[1].stride == (u.stride,) * 2
                assert isinstance(u.branch_main[-1], SigmoidSqueezeExcite)
                if model is ex:  # depthwise 3x3, main width = the unit output
                    assert convs[2].groups == convs[2].in_channels == u.out_channels
            # ExLarge closes every stage with a 1x1 conv
            assert (not isinstance(stage[-1], LargeShuffleUnit)) == (model is ex)
    se = large.stage3[1].branch_main[-1].attention
    assert se[1].in_channels == se[1].out_channels == 32 and se[1].bias is not None  # two full-width layers
    se = ex.stage3[1].branch_main[-1].attention
    assert (se[1].in_channels, se[1].out_channels) == (80, 20)  # reduction 4


@COMPAT
def test_sigmoid_squeeze_excite_matches_formula() -> None:
    torch.manual_seed(0)
    se = SigmoidSqueezeExcite(8, reduction=2)
    x = torch.randn(2, 8, 5, 5)
    a = se.attention
    z = a[3](torch.relu(a[1](x.mean((2, 3), keepdim=True))))
    # the module's own layers on the same tensors (values O(1)): equal up to the last bits; assert_close's float32
    # defaults (atol 1e-5, rtol 1.3e-6) cover that, a wrong gate does not pass
    torch.testing.assert_close(se(x), x * torch.sigmoid(z))


@COMPAT
def test_norm_cfg_none_is_the_official_bn_and_a_config_is_used_as_given() -> None:
    model = ShuffleNetV2Large(arch=SHALLOW['Large'], norm_cfg=dict(type='BN', eps=1e-3))
    assert {m.eps for m in model.modules() if isinstance(m, nn.BatchNorm2d)} == {1e-3}
    assert ShuffleNetV2Large(arch=dict(SHALLOW['ExLarge'], bn_eps=1e-7)).norm_cfg == dict(type='BN', eps=1e-7)


def test_forward_traces_without_data_dependent_control_flow() -> None:
    """A trace taken at one size runs at another and matches eager (static graph: slices, cat, reshape only)."""
    model = randomize_bn(ShuffleNetV2Large(**all_outputs(SHALLOW['Large'])))
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.randn(1, 3, 64, 64), check_trace=False)
        x = torch.randn(1, 3, 96, 64)
        for a, b in zip(traced(x), model(x)):
            # the trace replays the same aten ops on the same tensors (normally bit-identical); scale-relative
            # slack of 1e-5 of max(1, S) (assert_close's float32 rtol on every element besides) in case the
            # graph executor picks another kernel, far below what a size-specialised trace would change
            assert_close_scaled(a, b, atol=1e-5, rtol=1.3e-6)


# ---------------------------------------------------------------- converter
@COMPAT
def test_converter_registered() -> None:
    assert ('megvii', 'ShuffleNetV2Large') in available_converters()


@COMPAT
@pytest.mark.parametrize('base', ['Large', 'ExLarge'])
def test_round_trip_matches_official(tmp_path: Path, base: str, monkeypatch) -> None:
    """Every stage output and the last output equal the official network's (the layouts route channels alike, so
    the channel permutation is the identity); the classifier and auxiliary heads are dropped and reported."""
    reports: list[str] = []
    monkeypatch.setattr(megvii_large, 'print_log', lambda msg, **kw: reports.append(msg))
    arch, aux = ROUND_TRIP[base]
    ref, src = write_official(tmp_path, arch, **aux)
    out = convert_checkpoint('megvii', 'ShuffleNetV2Large', src, tmp_path / 'converted.pth', all_outputs(arch))
    model = target_backbone('ShuffleNetV2Large', all_outputs(arch)).eval()
    model.load_state_dict(read_state_dict(out), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        stages, last = ref.forward_features(x)
        outs = model(x)
    expected = stages + [last] if base == 'Large' else stages
    assert len(outs) == len(expected) == model.num_outputs
    for ours, theirs in zip(outs, expected):
        # the official re-implementation with the same weights (other modules, same channel order): rounding of
        # another summation order, a few float32 eps per layer of the magnitude S; 2e-5 of max(1, S)
        assert_close_scaled(ours, theirs, atol=2e-5)
    n_head = 2  # fc.{weight,bias} / fc.fc.{weight,bias}
    assert len(reports) == 1 and f'dropped {len(aux_keys(ref)) + n_head} keys' in reports[0]
    assert all(f'predict_{s}.*' in reports[0] for s in (56, 28, 14)) and 'fc.*' in reports[0]
    assert torch.load(out, weights_only=True)['meta']['backbone']['type'] == 'ShuffleNetV2Large'


@COMPAT
def test_se_aliases(tmp_path: Path) -> None:
    """``se_block.0/2`` name the same layers as ``se_fc1/2``: either name converts alone; disagreeing copies are
    refused."""
    arch = SHALLOW['Large']
    ref = randomize_(official(arch), seed=1)
    sd = official_checkpoint(ref)['state_dict']
    only_alias = {k: v for k, v in sd.items() if '.se_fc' not in k}
    assert len(only_alias) < len(sd)
    torch.save({'state_dict': only_alias}, tmp_path / 'alias.pth')
    state = read_state_dict(convert_checkpoint('megvii', 'ShuffleNetV2Large', tmp_path / 'alias.pth',
                                               tmp_path / 'o.pth', dict(arch=arch)))
    torch.testing.assert_close(state['stage2.1.branch_main.8.attention.1.weight'],  # exact: a reshaped copy
                               ref.features[1][1].se_fc1.weight[:, :, None, None], rtol=0, atol=0)
    key = 'module.features.1.3b.se_block.2.bias'
    bad = dict(sd, **{key: sd[key] + 1})
    torch.save({'state_dict': bad}, tmp_path / 'bad.pth')
    with pytest.raises(ConversionError, match='se_block.2.bias.*hold different tensors'):
        convert_checkpoint('megvii', 'ShuffleNetV2Large', tmp_path / 'bad.pth', tmp_path / 'x.pth', dict(arch=arch))
    assert not (tmp_path / 'x.pth').exists()


def test_checkpoint_without_batch_counters(tmp_path: Path) -> None:
    arch = SHALLOW['ExLarge']
    ref = randomize_(official(arch), seed=2)
    sd = {k: v for k, v in official_checkpoint(ref)['state_dict'].items() if not k.endswith('num_batches_tracked')}
    torch.save({'state_dict': sd}, tmp_path / 'old.pth')
    state = read_state_dict(convert_checkpoint('megvii', 'ShuffleNetV2Large', tmp_path / 'old.pth',
                                               tmp_path / 'o.pth', dict(arch=arch)))
    assert int(state['conv1.1.num_batches_tracked']) == 0


@COMPAT
@pytest.mark.parametrize('source, target, extra, message', [
    ('ExLarge', SHALLOW['Large'], {}, 'wrong --type or --arch'),
    ('Large', SHALLOW['ExLarge'], {}, 'wrong --type or --arch'),
    ('Large', dict(SHALLOW['Large'], groups=2), {}, r'has shape .* \(wrong --arch\?\)'),
    ('Large', SHALLOW['Large'], {'module.features.0.2a.extra.weight': torch.zeros(1)},
     r"1 unknown keys \['features.0.2a.extra.weight'\]"),
])
def test_mismatched_checkpoint_is_refused(tmp_path: Path, source: str, target: dict, extra: dict,
                                          message: str) -> None:
    ref = randomize_(official(SHALLOW[source]))
    ckpt = official_checkpoint(ref)
    ckpt['state_dict'].update(extra)
    torch.save(ckpt, tmp_path / 'in.pth')
    with pytest.raises(ConversionError, match=message):
        convert_checkpoint('megvii', 'ShuffleNetV2Large', tmp_path / 'in.pth', tmp_path / 'out.pth',
                           dict(arch=target))
    assert not (tmp_path / 'out.pth').exists() and not list(tmp_path.glob('.*.tmp'))


def test_cli_refuses_another_variant(tmp_path: Path, capsys) -> None:
    """``convert_weights.py --src megvii --type ShuffleNetV2Large --arch ...``: a checkpoint of another width is
    refused with one message (exit 1) and nothing is written; an unknown arch names the valid ones."""
    cli = load_script('tools/model_converters/convert_weights.py')
    _, src = write_official(tmp_path, SHALLOW['Large'])
    assert cli.main(['--src', 'megvii', '--type', 'ShuffleNetV2Large', '--arch', 'Large', str(src),
                     str(tmp_path / 'out.pth')]) == 1
    assert "does not match arch='Large'" in capsys.readouterr().err
    assert cli.main(['--src', 'megvii', '--type', 'ShuffleNetV2Large', '--arch', 'Huge', str(src),
                     str(tmp_path / 'out.pth')]) == 1
    assert "valid names: ['Large', 'ExLarge']" in capsys.readouterr().err
    assert not (tmp_path / 'out.pth').exists() and not list(tmp_path.glob('.*.tmp'))


# ---------------------------------------------------------------- encodings
_L = dict(base='Large')


@COMPAT
@pytest.mark.parametrize('arch, message', [
    ('Huge', r"valid names: \['Large', 'ExLarge'\]"),
    (dict(stage_channels=(16, 32, 64, 128)), r'needs "base" in \[\'Large\', \'ExLarge\'\]'),
    (dict(_L, depth=3), r"unknown keys: \['depth'\]"),
    (dict(_L, repeats=(1, 2, 3)), r'repeats.*3 entries, expected 4'),
    (dict(_L, repeats=(1, 0, 1, 1)), 'positive int'),
    (dict(_L, stage_channels=(256, 513, 1024, 2048)), 'stage_channels.*513 is odd'),
    (dict(_L, stem_channels=(64, 64, 127)), 'stem_channels.*127 is odd'),
    (dict(_L, groups=3), r'groups=3 does not divide the 128 channels .* stage 1'),
    (dict(base='ExLarge', last_channels=1280), 'no last conv; last_channels must be None'),
    (dict(_L, last_channels=None), 'last_channels.*positive int'),
    (dict(_L, se_reduction=512), 'se_reduction=512 leaves no channel'),
    (dict(_L, bn_eps=0), r'bn_eps.*\(0, 1\)'),
    (5, 'must be one of'),
])
def test_bad_encoding_raises(arch, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_large_arch(arch)


@COMPAT
def test_dict_encoding_overrides_the_base() -> None:
    spec = parse_large_arch(dict(base='ExLarge', repeats=[1, 1, 1, 1]))
    assert spec.repeats == (1, 1, 1, 1) and spec.stage_channels == (320, 640, 1280, 2560) and spec.stage_conv
    assert parse_large_arch('Large') == parse_large_arch(dict(base='Large'))
    assert build_backbone(dict(type='ShuffleNetV2Large', arch=SHALLOW['Large'])).out_indices == (0, 1, 2, 3)
