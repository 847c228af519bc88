"""Weight converters for ShuffleNet V1/V2: torchvision, Megvii ShuffleNet-Series and mmpretrain layouts, and the CLI.

Every round trip builds the *source* network from ``tests/official_refs`` (its own module names and channel routing)
with random weights and BN statistics, converts its state dict, loads it strictly into the backbone and compares
features numerically (float64, 64x64 input).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

import shufflenet_det.converters as converters
from helpers import REPO as ROOT
from helpers import assert_close_scaled, load_script
from official_refs import randomize_
from official_refs.megvii_v1 import MegviiShuffleNetV1
from official_refs.megvii_v2 import MegviiShuffleNetV2
from official_refs.mmpretrain_v1 import MMPretrainShuffleNetV1
from official_refs.mmpretrain_v2 import MMPretrainShuffleNetV2
from official_refs.torchvision_v2 import TorchvisionShuffleNetV2
from shufflenet_det.converters import ConversionError, core, get_converter
from shufflenet_det.converters.megvii_v1v2 import megvii_v2_stage_permutations, megvii_v2_unit_plan
from shufflenet_det.converters.mmpretrain import regroup_shuffle
from shufflenet_det.utils.checkpoint import CheckpointError, read_state_dict
from zygote import run_python

pytestmark = pytest.mark.compat  # also run on the OpenMMLab-standard stack (make test-openmmlab)

CLI = ROOT / 'tools' / 'model_converters' / 'convert_weights.py'
#: Both networks run in float64 (eps 2.2e-16: summation-order differences between kernels stay below 1e-12 of the
#: feature magnitude S); the converted weights were float32 tensors, and a converter that regroups or combines them
#: rounds each once in float32 (eps 1.2e-7), ~1e-6 of S over the network. Allowed: 1e-5 of max(1, S) plus 1e-6 of
#: each element (assert_close_scaled), while a wrong permutation or grouping moves features by O(S).
ATOL, RTOL = 1e-5, 1e-6


@pytest.fixture(scope='module')
def image() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _convert_and_run(source: str, backbone_type: str, ref: torch.nn.Module, kwargs: dict, image: torch.Tensor,
                     state_dict: dict | None = None) -> tuple[list[torch.Tensor], tuple[torch.Tensor, ...], dict]:
    """Convert ``ref``'s state dict, strict-load it into the backbone; return (reference outputs, backbone outputs,
    converted state dict)."""
    converted = get_converter(source, backbone_type)(state_dict or ref.state_dict(), dict(kwargs))
    out_indices = (1, 2, 3, 4) if backbone_type == 'ShuffleNetV2' else (1, 2, 3)
    model = core.target_backbone(backbone_type, dict(kwargs, out_indices=out_indices))
    model.load_state_dict(converted, strict=True)
    model.double().eval()
    ref.double().eval()
    with torch.no_grad():
        return ref.stage_outputs(image), model(image), converted


def _assert_same(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape
    assert_close_scaled(actual, expected, atol=ATOL, rtol=RTOL)


# ------------------------------------------------------------------------------------------------------ torchvision
@pytest.mark.parametrize('widen_factor', [0.5, 1.0])
def test_torchvision_keeps_every_tensor_and_drops_fc(widen_factor, image):
    ref = randomize_(TorchvisionShuffleNetV2(widen_factor), seed=1)
    src = ref.state_dict()
    assert {'fc.weight', 'fc.bias'} <= set(src)
    expected, actual, converted = _convert_and_run('torchvision', 'ShuffleNetV2', ref,
                                                   dict(widen_factor=widen_factor), image)
    assert set(converted) == set(src) - {'fc.weight', 'fc.bias'}
    assert all(torch.equal(converted[k], src[k]) for k in converted)  # exact: same layout, tensors copied
    for a, b in zip(actual, expected):  # same formulation: same features
        _assert_same(a, b)


def test_missing_bn_counters_are_filled_with_zero():
    src = {k: v for k, v in randomize_(TorchvisionShuffleNetV2(0.5)).state_dict().items()
           if not k.endswith('num_batches_tracked')}
    converted = get_converter('torchvision', 'ShuffleNetV2')(src, dict(widen_factor=0.5))
    counters = [k for k in converted if k.endswith('num_batches_tracked')]
    assert counters and all(int(converted[k]) == 0 for k in counters)


# ----------------------------------------------------------------------------------------------------- Megvii V2
def test_megvii_v2_permutation_algebra(image):
    """Stage outputs equal the official ones up to the documented permutation; conv5 equals exactly."""
    ref = randomize_(MegviiShuffleNetV2('0.5x'), seed=2)
    src = {f'module.{k}': v for k, v in ref.state_dict().items()}  # DataParallel checkpoint
    assert 'module.classifier.0.weight' in src
    expected, actual, converted = _convert_and_run('megvii', 'ShuffleNetV2', ref, dict(widen_factor=0.5), image,
                                                   state_dict=src)
    perms = megvii_v2_stage_permutations(0.5)
    assert len(perms) == 3
    for perm, off, ours in zip(perms, expected[:3], actual[:3]):
        assert torch.equal(torch.sort(perm).values, torch.arange(off.shape[1]))  # a permutation ...
        assert not torch.equal(perm, torch.arange(off.shape[1]))  # ... and not the identity
        _assert_same(ours, off[:, perm])
    _assert_same(actual[3], expected[3])  # conv5 == conv_last

    # the permutations are needed: renaming alone computes another function
    naive = {k: ref.state_dict()[k2] for k, k2 in _megvii_v2_names(converted).items()}
    model = core.target_backbone('ShuffleNetV2', dict(widen_factor=0.5, out_indices=(4,)))
    model.load_state_dict(naive, strict=True)
    with torch.no_grad():
        wrong = model.double().eval()(image)[0]
    assert (wrong - expected[3]).abs().max() > 0.1 * expected[3].abs().max()  # O(S), not rounding


def _megvii_v2_names(converted: dict) -> dict:
    """Backbone key -> official key by renaming only (for the negative control above)."""
    units = [f'stage{s}.{i}' for s, n in ((2, 4), (3, 8), (4, 4)) for i in range(n)]
    out = {}
    for key in converted:
        if key.startswith('conv1.'):
            out[key] = 'first_conv.' + key[6:]
        elif key.startswith('conv5.'):
            out[key] = 'conv_last.' + key[6:]
        else:
            unit = '.'.join(key.split('.')[:2])
            rest = key[len(unit) + 1:].replace('branch1', 'branch_proj').replace('branch2', 'branch_main')
            out[key] = f'features.{units.index(unit)}.{rest}'
    return out


def test_megvii_v2_plans_keep_parity_at_every_width():
    """The algebra finds a consistent channel pairing for every unit layout (internal parity checks pass)."""
    for channels in ((24, 116, 232, 464), (24, 176, 352, 704), (24, 244, 488, 976), (24, 48, 96, 192)):
        units, cin = [], channels[0]
        for repeats, cout in zip((4, 8, 4), channels[1:]):
            units.append([(2, cin, cout // 2)] + [(1, cout, cout // 2)] * (repeats - 1))
            cin = cout
        for stage, plan in zip(units, megvii_v2_unit_plan(units)):
            for (_, _, half), entry in zip(stage, plan):
                assert torch.equal(torch.sort(entry['pi_out']).values, torch.arange(2 * half))


def test_megvii_v2_unequal_split_is_refused():
    """Official 1.0x stage 2 opens with a 24 + 92 split that a torchvision-formulation unit cannot compute."""
    src = MegviiShuffleNetV2('1.0x').state_dict()
    for kwargs in (dict(widen_factor=1.0), dict(widen_factor=1.0, layout='torchvision')):
        with pytest.raises(ConversionError, match=r'24 projected \+ 92 main channels.*cannot be converted exactly'
                                                  r".*--cfg-options layout=megvii"):
            get_converter('megvii', 'ShuffleNetV2')(src, kwargs)


@pytest.mark.parametrize('size', ['0.5x', '1.0x'])
def test_megvii_v2_official_layout_round_trip(size, image):
    """layout='megvii' computes the official function: every stage output and conv5 equal, no permutation."""
    ref = randomize_(MegviiShuffleNetV2(size), seed=7)
    src = {f'module.{k}': v for k, v in ref.state_dict().items()}
    expected, actual, converted = _convert_and_run('megvii', 'ShuffleNetV2', ref,
                                                   dict(widen_factor=float(size[:-1]), layout='megvii'), image,
                                                   state_dict=src)
    assert len(actual) == len(expected) == 4
    for a, b in zip(actual, expected):
        _assert_same(a, b)
    # renaming only: every tensor is the official one, unchanged (exact: copies)
    names = _megvii_v2_names(converted)
    assert all(torch.equal(converted[k], src[f'module.{names[k]}']) for k in converted)


def test_megvii_v2_official_layout_renames_every_width():
    """Every official width (0.5x-2.0x) converts onto layout='megvii' by renaming alone (classifier dropped)."""
    for size in ('0.5x', '1.0x', '1.5x', '2.0x'):
        src = MegviiShuffleNetV2(size).state_dict()
        converted = get_converter('megvii', 'ShuffleNetV2')(src, dict(widen_factor=float(size[:-1]), layout='megvii'))
        assert len(converted) == len(src) - 1
        names = _megvii_v2_names(converted)
        assert all(torch.equal(converted[k], src[names[k]]) for k in converted), size  # exact: copies
    with pytest.raises(ConversionError, match='another variant'):  # a 1.0x file is not a 1.5x backbone
        get_converter('megvii', 'ShuffleNetV2')(MegviiShuffleNetV2('1.0x').state_dict(),
                                                dict(widen_factor=1.5, layout='megvii'))


@pytest.mark.parametrize('source', ['torchvision', 'mmpretrain'])
def test_torchvision_formulation_sources_refuse_megvii_layout(source):
    """At 0.5x the shapes coincide, so only an explicit check stops these weights from landing in another network."""
    ref = TorchvisionShuffleNetV2(0.5) if source == 'torchvision' else MMPretrainShuffleNetV2(0.5)
    with pytest.raises(ConversionError, match="layout='megvii' is not supported.*layout='torchvision'"):
        get_converter(source, 'ShuffleNetV2')(ref.state_dict(), dict(widen_factor=0.5, layout='megvii'))


# ----------------------------------------------------------------------------------------------------- Megvii V1
@pytest.mark.parametrize('groups,size', [(3, '0.5x'), (3, '1.0x'), (8, '0.5x'), (8, '1.0x')])
def test_megvii_v1_round_trip(groups, size, image):
    ref = randomize_(MegviiShuffleNetV1(groups, size), seed=3)
    src = {f'module.{k}': v for k, v in ref.state_dict().items()}
    expected, actual, _ = _convert_and_run('megvii', 'ShuffleNetV1', ref,
                                           dict(groups=groups, widen_factor=float(size[:-1])), image, state_dict=src)
    for a, b in zip(actual, expected):
        _assert_same(a, b)


def test_megvii_v1_every_official_variant_converts():
    """All eight official tables (g3/g8 x 0.5-2.0x) rename onto the backbone's modules with identical tensors."""
    for groups in (3, 8):
        for size in ('0.5x', '1.0x', '1.5x', '2.0x'):
            src = MegviiShuffleNetV1(groups, size).state_dict()
            converted = get_converter('megvii', 'ShuffleNetV1')(
                {f'module.{k}': v for k, v in src.items()}, dict(groups=groups, widen_factor=float(size[:-1])))
            assert len(converted) == len(src) - 1  # everything but the classifier
            # exact: the last unit's second pointwise conv is copied (no channel regrouping at its output)
            assert torch.equal(converted['stage4.3.branch_main_2.0.weight'], src['features.15.branch_main_2.0.weight'])


def test_megvii_v1_wrong_groups_is_a_shape_error():
    src = MegviiShuffleNetV1(3, '1.0x').state_dict()
    with pytest.raises(ConversionError, match='another variant'):
        get_converter('megvii', 'ShuffleNetV1')(src, dict(groups=8, widen_factor=1.0))


# ------------------------------------------------------------------------------------------------------ mmpretrain
def test_mmpretrain_v2_round_trip(image):
    ref = randomize_(MMPretrainShuffleNetV2(1.0), seed=4)
    assert {'head.fc.weight', 'head.fc.bias'} <= set(ref.state_dict())
    expected, actual, _ = _convert_and_run('mmpretrain', 'ShuffleNetV2', ref, dict(widen_factor=1.0), image)
    for a, b in zip(actual, expected):
        _assert_same(a, b)


@pytest.mark.parametrize('groups,widen_factor', [(3, 1.0), (3, 0.5), (2, 1.0), (1, 1.0)])
def test_mmpretrain_v1_round_trip(groups, widen_factor, image):
    """mmpretrain's (g, c/g) shuffle is turned into the backbone's official one by reordering bottleneck channels."""
    ref = randomize_(MMPretrainShuffleNetV1(groups, widen_factor), seed=5)
    expected, actual, _ = _convert_and_run('mmpretrain', 'ShuffleNetV1', ref,
                                           dict(groups=groups, widen_factor=widen_factor), image)
    for a, b in zip(actual, expected):
        _assert_same(a, b)


def test_mmpretrain_v1_width_with_other_stem_is_refused():
    """mmpretrain 1.5x has a 36-channel stem (int(24 * 1.5)); the official/backbone 1.5x has 24."""
    src = MMPretrainShuffleNetV1(3, 1.5).state_dict()
    with pytest.raises(ConversionError, match='backbone.conv1.conv.weight.*another variant'):
        get_converter('mmpretrain', 'ShuffleNetV1')(src, dict(groups=3, widen_factor=1.5))


def test_mmpretrain_v1_unrepresentable_shuffle_is_refused():
    src = MMPretrainShuffleNetV1(8, 1.0).state_dict()
    with pytest.raises(ConversionError, match='no channel reordering'):
        get_converter('mmpretrain', 'ShuffleNetV1')(src, dict(groups=8, widen_factor=1.0))


def test_regroup_shuffle_is_identity_for_equal_shuffles():
    q, cols = regroup_shuffle(60, 3, 3, src_shuffle_groups=20, tgt_shuffle_groups=20)
    assert torch.equal(q, torch.arange(60))
    assert all(torch.equal(c, torch.arange(20)) for c in cols)


# ------------------------------------------------------------------------------------------------- safe loading
def _write_pickle_bomb(path: Path, marker: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (open, (str(marker), 'w'))

    torch.save({'state_dict': {'conv1.0.weight': Payload()}}, path)


def test_safe_load_refuses_pickled_objects(tmp_path):
    bomb, marker = tmp_path / 'bomb.pth', tmp_path / 'executed'
    _write_pickle_bomb(bomb, marker)
    with pytest.raises(CheckpointError, match='weights_only=True'):
        read_state_dict(bomb)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------------------- CLI
def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return run_python([str(CLI), *args])


def _no_leftovers(folder: Path, out: Path) -> None:
    assert not out.exists()
    assert not [p.name for p in folder.iterdir() if p.name.endswith('.tmp')]


@pytest.fixture(scope='module')
def torchvision_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp('tv') / 'shufflenetv2_x0.5.pth'
    torch.save(randomize_(TorchvisionShuffleNetV2(0.5), seed=6).state_dict(), path)
    return path


def test_cli_end_to_end_and_pretrained_init(torchvision_file, tmp_path):
    out = tmp_path / 'pretrained' / 'shufflenetv2_0.5x.pth'
    proc = _run_cli('--src', 'torchvision', '--type', 'ShuffleNetV2', '--widen-factor', '0.5',
                    str(torchvision_file), str(out))
    assert proc.returncode == 0, proc.stderr
    saved = torch.load(out, map_location='cpu', weights_only=True)
    assert set(saved) == {'state_dict', 'meta'}
    assert saved['meta']['source'] == 'torchvision'
    assert saved['meta']['backbone'] == dict(type='ShuffleNetV2', widen_factor=0.5)
    model = core.target_backbone('ShuffleNetV2', dict(widen_factor=0.5,
                                                      init_cfg=dict(type='Pretrained', checkpoint=str(out))))
    model.init_weights()
    source = torch.load(torchvision_file, weights_only=True)
    loaded = model.state_dict()
    assert set(loaded) == set(source) - {'fc.weight', 'fc.bias'}
    assert all(torch.equal(loaded[k], source[k]) for k in loaded)  # exact: copies


def test_cli_wrong_widen_factor_exits_nonzero(torchvision_file, tmp_path):
    out = tmp_path / 'out.pth'
    proc = _run_cli('--src', 'torchvision', '--type', 'ShuffleNetV2', '--widen-factor', '1.0',
                    str(torchvision_file), str(out))
    assert proc.returncode != 0
    assert '--widen-factor' in proc.stderr and torchvision_file.name in proc.stderr
    _no_leftovers(tmp_path, out)


def _cli_main(argv: list[str]) -> int:
    return load_script(CLI).main(argv)


@pytest.mark.parametrize('case', ['extra_key', 'garbage', 'missing', 'pickle', 'bad_argument', 'bad_width'])
def test_cli_failures_name_the_problem_and_leave_nothing(case, torchvision_file, tmp_path, capsys):
    src = tmp_path / f'{case}.pth'
    args = ['--src', 'torchvision', '--type', 'ShuffleNetV2', '--widen-factor', '0.5']
    expected = src.name
    if case == 'extra_key':
        sd = torch.load(torchvision_file, weights_only=True)
        sd['stage2.0.branch3.weight'] = torch.zeros(1)
        torch.save(sd, src)
        expected = 'stage2.0.branch3.weight'
    elif case == 'garbage':
        src.write_bytes(b'\x00definitely not a checkpoint')
    elif case == 'pickle':
        _write_pickle_bomb(src, tmp_path / 'executed')
        expected = 'weights_only=True'
    elif case == 'bad_argument':
        src = torchvision_file
        args += ['--groups', '3']
        expected = '--groups'
    elif case == 'bad_width':
        src = torchvision_file
        args[-1] = '0.7'
        expected = 'widen_factor=0.7'
    out = tmp_path / 'out.pth'
    assert _cli_main(args + [str(src), str(out)]) == 1
    err = capsys.readouterr().err
    assert expected in err, err
    _no_leftovers(tmp_path, out)
    assert not (tmp_path / 'executed').exists()


def test_cli_uses_registered_converters_and_cfg_options(torchvision_file, tmp_path, monkeypatch):
    """A converter registered later (e.g. by another module) is available, and --cfg-options reach the backbone."""
    seen = {}

    def fake(state_dict, kwargs):
        seen.update(kwargs)
        return get_converter('torchvision', 'ShuffleNetV2')(state_dict, kwargs)

    monkeypatch.setitem(core._CONVERTERS, ('tv-copy', 'ShuffleNetV2'), fake)
    out = tmp_path / 'out.pth'
    assert _cli_main(['--src', 'tv-copy', '--type', 'ShuffleNetV2', str(torchvision_file), str(out),
                      '--cfg-options', 'widen_factor=0.5']) == 0
    assert seen == {'widen_factor': 0.5} and out.is_file()


def test_cli_megvii_v2_layout(tmp_path, capsys):
    """Official 1.0x: refused for the default (torchvision) layout with the CLI fix in the message; converted exactly
    with --cfg-options layout=megvii, which the output's meta records."""
    ref = randomize_(MegviiShuffleNetV2('1.0x'), seed=8)
    src = tmp_path / 'megvii_1.0x.pth.tar'
    torch.save({'state_dict': {f'module.{k}': v for k, v in ref.state_dict().items()}}, src)
    out = tmp_path / 'out.pth'
    args = ['--src', 'megvii', '--type', 'ShuffleNetV2', '--widen-factor', '1.0', str(src), str(out)]
    assert _cli_main(args) == 1
    err = capsys.readouterr().err
    assert '24 projected + 92 main' in err and '--cfg-options layout=megvii' in err, err
    _no_leftovers(tmp_path, out)
    assert _cli_main(args + ['--cfg-options', 'layout=megvii']) == 0
    saved = torch.load(out, map_location='cpu', weights_only=True)
    assert saved['meta']['backbone'] == dict(type='ShuffleNetV2', widen_factor=1.0, layout='megvii')
    model = core.target_backbone('ShuffleNetV2', dict(widen_factor=1.0, layout='megvii'))
    model.load_state_dict(saved['state_dict'], strict=True)


def test_cli_rejects_unknown_source(torchvision_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _cli_main(['--src', 'caffe', '--type', 'ShuffleNetV2', str(torchvision_file), str(tmp_path / 'o.pth')])
    assert exc.value.code == 2
    assert 'caffe' in capsys.readouterr().err


def test_importing_converters_registers_v1_v2():
    pairs = set(converters.available_converters())
    assert {('torchvision', 'ShuffleNetV2'), ('megvii', 'ShuffleNetV2'), ('megvii', 'ShuffleNetV1'),
            ('mmpretrain', 'ShuffleNetV2'), ('mmpretrain', 'ShuffleNetV1')} <= pairs
