"""Every detection config loads, builds, wires its FPN to its backbone and computes finite losses on a tiny batch."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.structures import InstanceData

import shufflenet_det  # noqa: F401  (registers the backbones and hooks)
from helpers import REPO

CONFIG_ROOT = REPO / 'configs'
SKIP_DIRS = {'_base_', 'deploy'}
CONFIGS = sorted(p for p in CONFIG_ROOT.rglob('*.py') if not SKIP_DIRS & set(p.relative_to(CONFIG_ROOT).parts[:-1]))
IDS = [str(p.relative_to(CONFIG_ROOT)) for p in CONFIGS]


def _representatives(ids: list[str]) -> set[str]:
    """The first config of each (folder, detector) group, e.g. ``shufflenetv2/retinanet_*``: the ones the
    compatibility suite also trains on the OpenMMLab-standard stack. Every config trains on the pinned stack; within a
    group the configs differ in widths and numbers, not in the modules the other stack has to run."""
    groups: dict[tuple[str, str], str] = {}
    for name in ids:
        folder, _, file = name.rpartition('/')
        groups.setdefault((folder, file.split('_')[0]), name)
    return set(groups.values())


COMPAT_IDS = _representatives(IDS)
PARAMS = [pytest.param(p, id=i, marks=[pytest.mark.compat] if i in COMPAT_IDS else []) for p, i in zip(CONFIGS, IDS)]

register_all_modules(init_default_scope=True)


def tiny_batch(size: int = 64, num_classes: int = 4) -> dict:
    """One ``size`` x ``size`` image with two ground-truth boxes, as a dataloader would deliver it."""
    gen = torch.Generator().manual_seed(0)
    sample = DetDataSample()
    sample.set_metainfo(dict(img_shape=(size, size), ori_shape=(size, size), scale_factor=(1.0, 1.0)))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[4.0, 6.0, 30.0, 40.0], [20.0, 18.0, 60.0, 50.0]]) * size / 64,
        labels=torch.tensor([0, min(1, num_classes - 1)]))
    image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=gen)
    return dict(inputs=[image], data_samples=[sample])


@pytest.mark.compat  # also run on the OpenMMLab-standard stack (make test-openmmlab)
def test_configs_found():
    names = set(IDS)
    assert 'retinanet_shufflenetv2.py' in names
    for family in ('shufflenetv2', 'shufflenetv1', 'detnas', 'shufflenetv2plus', 'shufflenetv2large'):
        for det in ('retinanet', 'faster-rcnn'):
            assert any(n.startswith(f'{family}/{det}_') for n in names), (family, det)
    assert {'mini/retinanet_shufflenetv2-1x_fpn_mini-coco.py', 'mini/faster-rcnn_shufflenetv2-1x_fpn_mini-coco.py',
            'mini/retinanet_r18_fpn_mini-coco.py'} <= names


@pytest.mark.parametrize('path', PARAMS)
@pytest.mark.slow
def test_config_builds_and_trains(path: Path):
    cfg = Config.fromfile(str(path))
    assert 'shufflenet_det' in cfg.custom_imports['imports']
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    init_cfg = cfg.model.backbone.get('init_cfg')
    if init_cfg is not None:  # ImageNet weights by name (converted by this project), never a URL needing torchvision
        assert init_cfg['type'] == 'Pretrained' and init_cfg['checkpoint'].startswith('shufflenet_det://')

    model = MODELS.build(copy.deepcopy(cfg.model))
    if init_cfg is not None:  # the named weights are of this backbone (type, width, groups, arch); nothing fetched
        from shufflenet_det.weights import check_backbone
        check_backbone(model.backbone, init_cfg['checkpoint'])
    head = cfg.model.get('bbox_head') or cfg.model.roi_head.bbox_head
    classes = cfg.train_dataloader.dataset.get('metainfo', {}).get('classes')
    num_classes = len(classes) if classes else 80
    assert head.num_classes == num_classes

    model.train()
    # a 1x1 stride-64 level (the lite detectors' GhostPAN) cannot train BN on one 64x64 image: use 128x128 there
    size = 128 if max(getattr(getattr(model, 'bbox_head', None), 'strides', (32,))) > 32 else 64
    data = model.data_preprocessor(tiny_batch(size, num_classes=num_classes), training=True)
    neck_in = list(cfg.model.neck.in_channels)
    if hasattr(model.backbone, 'out_channels'):  # the shufflenet_det contract (mmdet's ResNet has none)
        assert list(model.backbone.out_channels) == neck_in, 'FPN in_channels must equal backbone.out_channels'
    with torch.no_grad():
        feats = model.backbone(data['inputs'])
    assert [f.shape[1] for f in feats] == neck_in, 'FPN in_channels must equal the backbone output channels'

    losses = model(**data, mode='loss')
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total), losses
    assert total.item() > 0
