"""The real torchvision and mmpretrain ShuffleNets, where they import (the openmmlab stack).

Their checkpoints are made by the projects themselves (torchvision's model, mmpretrain's ImageClassifier built by its
own registry and saved as its Runner saves), converted with the project's converter, loaded through the public
``init_cfg``-free path (``build_backbone(..., checkpoint=...)``: strict) and compared feature for feature.

On the openmmlab stack ``make test-openmmlab`` sets ``SHUFFLENET_DET_REQUIRE_PEERS=1``: a missing or broken
torchvision / mmpretrain then fails these tests instead of skipping them. On the CPU pinned stack (no torchvision)
they are skipped with the reason.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

import pytest
import torch

from helpers import assert_close_scaled, randomize_bn
from shufflenet_det.converters import convert_checkpoint
from shufflenet_det.utils.build import build_backbone

pytestmark = [pytest.mark.compat, pytest.mark.slow]

#: The converted backbone computes the peer's function in float32, with its channels (V1: its shuffle groups) in
#: another order and other modules: rounding of another summation order, a few float32 eps (1.2e-7) per layer of
#: the features' magnitude S. Allowed: 2e-5 of max(1, S) plus 1e-5 of each element (assert_close_scaled); a wrong
#: permutation, weight or BN moves features by O(S).
ATOL, RTOL = 2e-5, 1e-5


def _require(module: str) -> ModuleType:
    if os.environ.get('SHUFFLENET_DET_REQUIRE_PEERS') == '1':
        return importlib.import_module(module)  # must import on this stack: an ImportError fails the test
    try:
        return importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - a CUDA torchvision beside a CPU torch raises other errors too
        pytest.skip(f'{module} does not import here ({type(exc).__name__}: {exc}); it runs on the openmmlab stack')


@pytest.fixture(scope='module')
def image() -> torch.Tensor:
    return torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize('widen_factor', [0.5, 1.0])
def test_torchvision_shufflenet_v2(widen_factor: float, image: torch.Tensor, tmp_path: Path) -> None:
    models = _require('torchvision.models')
    name = {0.5: 'shufflenet_v2_x0_5', 1.0: 'shufflenet_v2_x1_0'}[widen_factor]
    tv = randomize_bn(getattr(models, name)(weights=None))
    src = tmp_path / f'{name}.pth'
    torch.save(tv.state_dict(), src)  # the layout of torchvision's published files
    out = convert_checkpoint('torchvision', 'ShuffleNetV2', src, tmp_path / 'converted.pth',
                             dict(widen_factor=widen_factor))
    ours = build_backbone(dict(type='ShuffleNetV2', widen_factor=widen_factor, out_indices=(1, 2, 3, 4)),
                          checkpoint=out).eval()
    with torch.no_grad():
        x = tv.maxpool(tv.conv1(image))
        expected = []
        for stage in (tv.stage2, tv.stage3, tv.stage4, tv.conv5):
            x = stage(x)
            expected.append(x)
        actual = ours(image)
    assert len(actual) == 4
    for a, e in zip(actual, expected):
        assert_close_scaled(a, e, atol=ATOL, rtol=RTOL)


def _mmpretrain_checkpoint(backbone: dict, in_channels: int, path: Path) -> torch.nn.Module:
    """mmpretrain's ImageClassifier built by mmpretrain's registry, saved the way its Runner saves."""
    _require('mmpretrain')
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):  # another test may have made mmdet the default
        clf = MMPRETRAIN_MODELS.build(dict(
            type='ImageClassifier', backbone=backbone, neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=1000, in_channels=in_channels,
                      loss=dict(type='CrossEntropyLoss', loss_weight=1.0))))
    clf.init_weights()
    randomize_bn(clf)
    torch.save({'meta': {'mmpretrain_version': importlib.import_module('mmpretrain').__version__},
                'state_dict': clf.state_dict()}, path)
    return clf


@pytest.mark.parametrize('family, kwargs, theirs, ours, last_channels', [
    ('ShuffleNetV2', dict(widen_factor=0.5), (0, 1, 2, 3), (1, 2, 3, 4), 1024),
    ('ShuffleNetV2', dict(widen_factor=1.0), (0, 1, 2, 3), (1, 2, 3, 4), 1024),
    ('ShuffleNetV1', dict(groups=3, widen_factor=1.0), (0, 1, 2), (1, 2, 3), 960),
])
def test_mmpretrain_checkpoints(family: str, kwargs: dict, theirs: tuple, ours: tuple, last_channels: int,
                                image: torch.Tensor, tmp_path: Path) -> None:
    """mmpretrain's stage outputs (and V2's last conv) equal ours after conversion; V1's (g, c/g) shuffle is mapped
    onto the official one by the converter."""
    clf = _mmpretrain_checkpoint(dict(type=family, out_indices=theirs, **kwargs), last_channels,
                                 tmp_path / 'mmpretrain.pth')
    out = convert_checkpoint('mmpretrain', family, tmp_path / 'mmpretrain.pth', tmp_path / 'converted.pth',
                             dict(kwargs))
    model = build_backbone(dict(type=family, out_indices=ours, **kwargs), checkpoint=out).eval()
    with torch.no_grad():
        expected, actual = clf.backbone(image), model(image)
    assert len(actual) == len(expected) == len(ours)
    for a, e in zip(actual, expected):
        assert_close_scaled(a, e, atol=ATOL, rtol=RTOL)
