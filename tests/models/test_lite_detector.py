"""The lite detector family (GhostPAN + LiteGFLHead + training-only LiteAuxHead in LiteDetector): configs, counts,
every loss term's gradient, the assignment on a hand-made case, the auxiliary branch (guidance, detaching, absence at
test and deploy time) and the inference decode."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from mmengine.structures import InstanceData

from helpers import REPO, assert_close_scaled, randomize_bn

pytestmark = pytest.mark.compat

#: The COCO lite configs and their mini-COCO counterparts.
LITE_CONFIGS = sorted((REPO / 'configs' / 'lite').glob('lite-*.py')) + sorted((REPO / 'configs/mini').glob('lite-*.py'))


def tiny_cfg(num_classes: int = 3, aux: bool = True, detach_epoch: int = 10) -> dict:
    """A small lite detector (ShuffleNetV2 0.5x, 32-channel neck/head) with the production modules."""
    act = dict(type='LeakyReLU', negative_slope=0.1)
    cfg = dict(
        type='LiteDetector',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[0, 0, 0], std=[255, 255, 255], bgr_to_rgb=False,
                               pad_size_divisor=32),
        backbone=dict(type='ShuffleNetV2', widen_factor=0.5, out_indices=(1, 2, 3), act_cfg=act),
        neck=dict(type='GhostPAN', in_channels=[48, 96, 192], out_channels=32, num_extra_level=1, act_cfg=act),
        bbox_head=dict(type='LiteGFLHead', num_classes=num_classes, in_channels=32, feat_channels=32,
                       strides=[8, 16, 32, 64], reg_max=7, act_cfg=act),
        aux_head=dict(type='LiteAuxHead', num_classes=num_classes, in_channels=64, feat_channels=32,
                      stacked_convs=2, strides=[8, 16, 32, 64], norm_cfg=dict(type='GN', num_groups=8)) if aux
        else None,
        detach_epoch=detach_epoch,
        train_cfg=dict(assigner=dict(type='DynamicSoftLabelAssigner', topk=13)),
        test_cfg=dict(nms_pre=100, min_bbox_size=0, score_thr=0.0, nms=dict(type='nms', iou_threshold=0.6),
                      max_per_img=20))
    return cfg


def build(cfg: dict) -> torch.nn.Module:
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    import shufflenet_det  # noqa: F401
    from shufflenet_det.utils import quiet_init_weights
    register_all_modules()
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(cfg))
    quiet_init_weights(model)
    return model


def samples(size: int = 64, boxes=((4.0, 6.0, 40.0, 50.0), (30.0, 20.0, 62.0, 60.0)), labels=(0, 2), n: int = 2):
    from mmdet.structures import DetDataSample
    out = []
    for _ in range(n):
        s = DetDataSample(metainfo=dict(img_shape=(size, size), pad_shape=(size, size), ori_shape=(size, size),
                                        batch_input_shape=(size, size), scale_factor=(1.0, 1.0)))
        s.gt_instances = InstanceData(bboxes=torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                      labels=torch.as_tensor(labels, dtype=torch.long))
        out.append(s)
    return out


@pytest.fixture(scope='module')
def model() -> torch.nn.Module:
    return build(tiny_cfg())


# ------------------------------------------------------------------------------------------------ configs, counts
@pytest.mark.parametrize('path', LITE_CONFIGS, ids=lambda p: p.name)
def test_every_lite_config_builds_and_its_neck_matches_the_backbone(path: Path) -> None:
    from shufflenet_det.utils import build_detector, load_config
    cfg = load_config(path)
    model = build_detector(cfg)
    assert type(model).__name__ == 'LiteDetector'
    assert list(model.neck.in_channels) == list(model.backbone.out_channels)
    assert model.bbox_head.in_channels == model.neck.out_channels
    assert model.aux_head.strides == model.bbox_head.strides == (8, 16, 32, 64)
    assert model.bbox_head.prior_generator.num_levels == model.neck.num_outs
    if '_coco-' in path.name:  # the COCO recipe written once, in the reference config
        assert cfg.train_dataloader.batch_size == cfg.auto_scale_lr.base_batch_size == 96
        assert cfg.optim_wrapper.optimizer.type == 'AdamW' and cfg.optim_wrapper.clip_grad.max_norm == 35
        assert cfg.train_cfg.max_epochs == 300
        assert {h['type'] for h in cfg.custom_hooks} == {'EMAHook', 'SetEpochInfoHook'}


def test_lite_m_at_320_meets_the_size_targets() -> None:
    """At most 1.2 M parameters and 0.95 G multiply-adds at test time (the auxiliary branch excluded)."""
    from shufflenet_det.analysis import model_complexity
    from shufflenet_det.utils import build_detector
    model = build_detector(REPO / 'configs/lite/lite-m_shufflenetv2-1x_300e_coco-320.py')
    full = model_complexity(model, (320, 320))
    training_only = sum(p.numel() for n in model.training_only_modules for p in getattr(model, n).parameters())
    deployed = model_complexity(copy.deepcopy(model).switch_to_deploy(), (320, 320))
    assert training_only > 1_000_000 and full['params'] - training_only > deployed['params']
    assert deployed['params'] <= 1_200_000 and deployed['flops'] <= 0.95e9
    assert deployed['flops'] == full['flops']  # the auxiliary branch never runs in inference


# ------------------------------------------------------------------------------------------------ neck
def test_ghost_pan_levels_and_size_check() -> None:
    from shufflenet_det.models.necks import GhostPAN
    neck = GhostPAN([8, 16, 32], 12, num_extra_level=1).eval()
    feats = [torch.randn(1, c, 64 // s, 64 // s) for c, s in ((8, 8), (16, 16), (32, 32))]
    outs = neck(feats)
    assert [tuple(o.shape) for o in outs] == [(1, 12, 8, 8), (1, 12, 4, 4), (1, 12, 2, 2), (1, 12, 1, 1)]
    with pytest.raises(ValueError, match='pad_size_divisor'):
        neck([torch.randn(1, 8, 7, 7), torch.randn(1, 16, 4, 4), torch.randn(1, 32, 2, 2)])
    with pytest.raises(ValueError, match='in_channels'):
        GhostPAN([8], 12)


# ------------------------------------------------------------------------------------------------ losses
def test_every_loss_term_is_finite_and_reaches_its_parameters(model) -> None:
    model.train()
    model.set_epoch(0)
    x = torch.randn(2, 3, 64, 64)
    losses = model.loss(x, samples())
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_dfl', 'aux_loss_cls', 'aux_loss_bbox', 'aux_loss_dfl'}
    for name, value in losses.items():
        assert torch.isfinite(value) and value > 0, name
        model.zero_grad(set_to_none=True)
        value.backward(retain_graph=True)
        head = model.aux_head if name.startswith('aux_') else model.bbox_head
        grads = [p.grad for p in head.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), name
        # before detach_epoch every term also trains the backbone
        assert model.backbone.conv1[0].weight.grad.abs().sum() > 0, name


def test_the_auxiliary_branch_is_detached_from_detach_epoch_on() -> None:
    model = build(tiny_cfg(detach_epoch=2)).train()
    model.set_epoch(2)
    losses = model.loss(torch.randn(2, 3, 64, 64), samples())
    aux = sum(v for k, v in losses.items() if k.startswith('aux_'))
    aux.backward()
    assert model.backbone.conv1[0].weight.grad is None or model.backbone.conv1[0].weight.grad.abs().sum() == 0
    assert all(p.grad is None for p in model.neck.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.aux_neck.parameters())


def test_without_gt_the_box_losses_are_zero_and_keep_the_graph(model) -> None:
    model.train()
    losses = model.loss(torch.randn(2, 3, 64, 64), samples(boxes=torch.zeros(0, 4), labels=[], n=2))
    assert losses['loss_bbox'] == 0 and losses['loss_dfl'] == 0 and losses['loss_cls'] > 0
    sum(losses.values()).backward()


# ------------------------------------------------------------------------------------------------ assignment
def test_assignment_on_a_tiny_case() -> None:
    """One box: positives are points inside it, labelled with its class, scored with their IoU, and their distance
    targets (in strides) are the point-to-side distances, below reg_max."""
    head = build(tiny_cfg(num_classes=3, aux=False)).bbox_head
    maps = [torch.zeros(1, 3 + 32, 64 // s, 64 // s) for s in (8, 16, 32, 64)]
    priors = head._flat_priors(maps)
    cls, reg = head._split_flat(maps)
    boxes = head._decode(priors, reg)[0]
    gt = InstanceData(bboxes=torch.tensor([[8.0, 8.0, 40.0, 40.0]]), labels=torch.tensor([2]))
    labels, scores, box_t, dist_t, num_pos = head._targets_single(cls[0], boxes, gt, priors)
    pos = (labels < 3).nonzero().squeeze(1)
    assert num_pos == pos.numel() > 0 and (labels[pos] == 2).all()
    px, py = priors[pos, 0], priors[pos, 1]
    assert ((px > 8) & (px < 40) & (py > 8) & (py < 40)).all()
    from mmdet.structures.bbox import bbox_overlaps
    iou = bbox_overlaps(boxes[pos], gt.bboxes).squeeze(1)
    # IoUs in [0, 1] and distances below 7 (in strides), each a handful of float32 ops on integer-valued
    # coordinates: a few ulp (<= 1e-6) at most if the head orders them otherwise; assert_close's float32 defaults
    # (atol 1e-5, rtol 1.3e-6) cover that, while a wrong point, box or stride is off by >= 1/64
    torch.testing.assert_close(scores[pos], iou)
    expected = torch.stack([px - 8, py - 8, 40 - px, 40 - py], 1) / priors[pos, 2:3]
    torch.testing.assert_close(dist_t[pos], expected.clamp(max=7 - 0.01))
    assert (box_t[pos] == gt.bboxes).all() and (scores[labels == 3] == 0).all()


# ------------------------------------------------------------------------------------------------ test / deploy time
def test_auxiliary_modules_never_run_at_test_time_and_are_dropped_for_deployment(model) -> None:
    model.eval()
    calls = []
    handles = [getattr(model, n).register_forward_hook(lambda *a, n=n: calls.append(n))
               for n in model.training_only_modules]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        results = model.predict(x, samples(n=1))
        tensors = model._forward(x)
    for h in handles:
        h.remove()
    assert calls == [] and model.training_only_modules == ('aux_neck', 'aux_head')
    assert 0 < len(results[0].pred_instances) <= 20  # max_per_img
    randomize_bn(model)
    deployed = copy.deepcopy(model).switch_to_deploy()
    assert deployed.training_only_modules == () and deployed.deployed
    assert not any(k.startswith(('aux_neck.', 'aux_head.', 'backbone.conv5.')) for k in deployed.state_dict())
    with torch.no_grad():
        ref = model._forward(x)[0]
        new = deployed._forward(x)[0]
    # folded vs unfolded BN (another float32 rounding of every weight, another summation order): a few float32 eps
    # (1.2e-7) per layer of the outputs' magnitude S; allowed 2e-5 of max(1, S) plus 1e-4 of each element, far
    # below a missing or wrong BN (randomize_bn: 10 % away from identity)
    for a, b in zip(ref, new):
        assert_close_scaled(b, a, atol=2e-5, rtol=1e-4)
    assert len(tensors[0]) == 4


def test_predict_decodes_the_distribution_like_the_export_tensor(model) -> None:
    """predict_by_feat's boxes are the softmax-integral distances x stride around each point; the flattened export
    tensor carries the sigmoid scores of the same points."""
    model.eval()
    head = model.bbox_head
    randomize_bn(model, seed=1)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        (maps,) = head(model.extract_feat(x))
        flat = head.flatten_outputs(maps)[0]
        results = head.predict_by_feat(maps, [dict(img_shape=(64, 64), scale_factor=(1.0, 1.0))],
                                       cfg=dict(score_thr=0.0, nms_pre=-1, nms=dict(type='nms', iou_threshold=1.0),
                                                max_per_img=10_000, min_bbox_size=-1), with_nms=False)[0]
    priors = head._flat_priors(maps)
    assert flat.shape == (priors.shape[0], 3 + 4 * 8)
    # manual decode of every point
    reg = flat[:, 3:].reshape(-1, 4, 8).softmax(-1) @ torch.arange(8.0)
    d = reg * priors[:, 2:3]
    manual = torch.stack([priors[:, 0] - d[:, 0], priors[:, 1] - d[:, 1], priors[:, 0] + d[:, 2],
                          priors[:, 1] + d[:, 3]], 1).clamp(0, 64)
    assert len(results) == flat.shape[0] * 3  # every (point, class) pair: no threshold, no top-k, no NMS
    # the same sigmoid / softmax ops of the same maps, maybe in another layout (vectorised or not): scores (<= 1,
    # ulp 6e-8) within 1e-6, distances up to 7 x 64 = 448 px (ulp 3e-5) within 1e-4 px + 1e-5 of the coordinate
    # (64 px: 6.4e-4); a wrong bin, stride or point is off by whole pixels
    for i in results.scores.argsort(descending=True)[:10]:
        points = ((flat[:, :3] - results.scores[i]).abs() < 1e-6).any(1).nonzero().squeeze(1)
        assert any(torch.allclose(results.bboxes[i], manual[p], atol=1e-4, rtol=1e-5) for p in points)


def test_every_mini_lite_detector_is_a_main_job_and_side_by_side_choice() -> None:
    from shufflenet_det.apps.mini_job import MINI_CONFIGS
    from shufflenet_det.apps.side_by_side import MODEL_NAMES
    assert set(MODEL_NAMES) == set(MINI_CONFIGS)
    lite = {k: v for k, v in MINI_CONFIGS.items() if k.startswith('lite')}
    assert set(lite) == {'lite', 'lite-s', 'lite-l', 'lite-detnas'}
    assert {REPO / 'configs' / v for v in lite.values()} == set((REPO / 'configs/mini').glob('lite-*.py'))
