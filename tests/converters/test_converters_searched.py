"""Megvii DetNAS / ShuffleNetV2+ / OneShot checkpoints -> backbones: numerical round trips against a
re-implementation of the official networks, refusals, and the command line."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import shufflenet_det  # noqa: F401
from helpers import assert_close_scaled, load_script
from official_refs.megvii_searched import build_official, official_checkpoint, randomize_
from shufflenet_det.converters import ConversionError, available_converters, convert_checkpoint, target_backbone
from shufflenet_det.models.backbones.archs import DETNAS_ARCHS, ONESHOT_ARCH, SHUFFLENET_V2_PLUS_ARCHS
from shufflenet_det.models.backbones.spos_blocks import deinterleave_index
from shufflenet_det.utils.checkpoint import read_state_dict
from zygote import run_python

pytestmark = pytest.mark.compat  # also run on the OpenMMLab-standard stack (make test-openmmlab)

ALL5 = (0, 1, 2, 3, 4)
#: The converted backbone computes the official function with its channels in another order (and the DetNAS stem
#: bias folded into its BN): the same float32 sums in another order, so the two differ by rounding only - a few
#: float32 eps (1.2e-7) per layer of the magnitude S of the features, ~1e-6 of S over the <= 50 layers of these
#: networks with random (fan-in scaled) weights. Allowed: 2e-5 of max(1, S) (assert_close_scaled). A wrong
#: permutation or a dropped bias moves features by O(S).
ATOL = 2e-5
CASES = [('DetNAS', 'COCO-FPN-300M', DETNAS_ARCHS['COCO-FPN-300M']),
         ('DetNAS', 'VOC-RetinaNet-300M', DETNAS_ARCHS['VOC-RetinaNet-300M']),
         ('DetNAS', 'COCO-FPN-1.3G', DETNAS_ARCHS['COCO-FPN-1.3G']),  # 16-unit stage: keys up to unit letter 'p'
         ('ShuffleNetV2Plus', 'Small', SHUFFLENET_V2_PLUS_ARCHS['Small']),
         ('OneShot', None, ONESHOT_ARCH)]


def _write_official(tmp_path: Path, family: str, spec: dict, seed: int = 0) -> tuple[torch.nn.Module, Path]:
    ref = randomize_(build_official(family, spec), seed=seed)
    path = tmp_path / f'official_{family}.pth'
    torch.save(official_checkpoint(ref), path)
    return ref, path


def _kwargs(arch) -> dict:
    return dict(out_indices=ALL5) if arch is None else dict(arch=arch, out_indices=ALL5)


def test_converters_registered() -> None:
    assert {('megvii', 'DetNAS'), ('megvii', 'ShuffleNetV2Plus'), ('megvii', 'OneShot')} <= set(available_converters())


@pytest.mark.parametrize('family, arch, spec', CASES, ids=[f'{f}-{a}' for f, a, _ in CASES])
def test_round_trip_matches_official(tmp_path: Path, family: str, arch, spec: dict) -> None:
    """last conv equal; stage k equal to the official stage k permuted by the de-interleave index."""
    ref, src = _write_official(tmp_path, family, spec)
    out = convert_checkpoint('megvii', family, src, tmp_path / 'converted.pth', _kwargs(arch))
    state = read_state_dict(out)
    model = target_backbone(family, _kwargs(arch)).eval()
    model.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        stages, last = ref.forward_features(x)
        outs = model(x)
    assert_close_scaled(outs[4], last, atol=ATOL)
    for ours, theirs in zip(outs[:4], stages):
        assert_close_scaled(ours, theirs[:, deinterleave_index(theirs.shape[1])], atol=ATOL)
        # really permuted, not equal: the permutation is part of the function (unpermuted, channels differ by O(S))
        assert (ours - theirs).abs().max() > 0.1 * theirs.abs().max()
    assert torch.load(out, weights_only=True)['meta']['backbone']['type'] == family


def test_detnas_stem_bias_is_folded(tmp_path: Path) -> None:
    ref, src = _write_official(tmp_path, 'DetNAS', DETNAS_ARCHS['COCO-FPN-300M'], seed=3)
    assert ref.first_conv.conv.bias.abs().sum() > 0
    state = read_state_dict(convert_checkpoint('megvii', 'DetNAS', src, tmp_path / 'o.pth', {}))
    assert 'conv1.0.bias' not in state
    # the converter does the same one float32 subtraction (bit-identical); assert_close's float32 defaults (about
    # 10 ulp relative) only leave room for a converter that computed it in another precision
    torch.testing.assert_close(state['conv1.1.running_mean'],
                               ref.first_conv.bn.running_mean - ref.first_conv.conv.bias)


def test_checkpoint_without_batch_counters(tmp_path: Path) -> None:
    """Old checkpoints have no ``num_batches_tracked``: converted with zero counters, same outputs."""
    ref = randomize_(build_official('OneShot', ONESHOT_ARCH), seed=1)
    ckpt = official_checkpoint(ref)
    ckpt['state_dict'] = {k: v for k, v in ckpt['state_dict'].items() if not k.endswith('num_batches_tracked')}
    torch.save(ckpt, tmp_path / 'old.pth')
    state = read_state_dict(convert_checkpoint('megvii', 'OneShot', tmp_path / 'old.pth', tmp_path / 'o.pth',
                                               dict(out_indices=(4,))))
    assert int(state['conv1.1.num_batches_tracked']) == 0
    model = target_backbone('OneShot', dict(out_indices=(4,))).eval()
    model.load_state_dict(state)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_close_scaled(model(x)[0], ref.forward_features(x)[1], atol=ATOL)


@pytest.mark.parametrize('family, spec, target, kwargs, message', [
    ('DetNAS', DETNAS_ARCHS['COCO-FPN-300M'], 'DetNAS', dict(arch='VOC-FPN-300M'), "arch='VOC-FPN-300M'"),
    ('ShuffleNetV2Plus', SHUFFLENET_V2_PLUS_ARCHS['Small'], 'ShuffleNetV2Plus', dict(arch='Medium'), 'wrong --arch'),
    ('ShuffleNetV2Plus', SHUFFLENET_V2_PLUS_ARCHS['Small'], 'OneShot', {}, 'wrong --type or --arch'),
    ('OneShot', ONESHOT_ARCH, 'DetNAS', {}, 'wrong --type or --arch'),
])
def test_mismatched_checkpoint_is_refused(tmp_path: Path, family, spec, target, kwargs, message) -> None:
    _, src = _write_official(tmp_path, family, spec)
    with pytest.raises(ConversionError, match=message):
        convert_checkpoint('megvii', target, src, tmp_path / 'out.pth', kwargs)
    assert not (tmp_path / 'out.pth').exists() and not list(tmp_path.glob('.*.tmp'))


def test_cli_converts_detnas(tmp_path: Path) -> None:
    ref, src = _write_official(tmp_path, 'DetNAS', DETNAS_ARCHS['VOC-FPN-300M'])
    out = tmp_path / 'detnas_voc_fpn_300m.pth'
    proc = run_python(['tools/model_converters/convert_weights.py', '--src', 'megvii', '--type', 'DetNAS', '--arch',
                       'VOC-FPN-300M', str(src), str(out)])
    assert proc.returncode == 0, proc.stderr
    model = target_backbone('DetNAS', dict(arch='VOC-FPN-300M', out_indices=(4,))).eval()
    model.load_state_dict(read_state_dict(out), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_close_scaled(model(x)[0], ref.forward_features(x)[1], atol=ATOL)


def test_cli_refuses_unknown_arch(tmp_path: Path, capsys) -> None:
    cli = load_script('tools/model_converters/convert_weights.py')
    _, src = _write_official(tmp_path, 'OneShot', ONESHOT_ARCH)
    assert cli.main(['--src', 'megvii', '--type', 'DetNAS', '--arch', 'COCO-FPN-500M', str(src),
                     str(tmp_path / 'x.pth')]) == 1
    assert "valid names: ['COCO-FPN-300M'" in capsys.readouterr().err
    assert cli.main(['--src', 'megvii', '--type', 'OneShot', str(src), str(tmp_path / 'oneshot.pth')]) == 0
    assert not (tmp_path / 'x.pth').exists() and (tmp_path / 'oneshot.pth').is_file()
