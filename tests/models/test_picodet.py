"""PP-PicoDet (legacy model zoo) in mmdet: CSPPAN, PicoHead, the configs' sizes against the published ones."""
from __future__ import annotations

import copy
import re

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.structures import InstanceData

from helpers import REPO, randomize_bn
from shufflenet_det.analysis import model_complexity
from shufflenet_det.models.dense_heads import PicoHead
from shufflenet_det.models.layers import count_batchnorm
from shufflenet_det.models.necks import CSPPAN
from shufflenet_det.utils import build_detector
from shufflenet_det.utils.build import switch_to_deploy

PICODET = REPO / 'configs/picodet'
TEST_CFG = dict(nms_pre=1000, score_thr=0.025, nms=dict(type='nms', iou_threshold=0.6), nms_top_k=1000,
                max_per_img=100, min_bbox_size=-1)

# Published sizes of the legacy model zoo (PaddleDetection configs/picodet/legacy_model/README.md): parameters in
# millions (rounded to 0.01 M) and GFLOPs at the input size.
PUBLISHED = [
    ('picodet-s_esnet_300e_coco-320.py', 320, 0.99, 0.73),
    ('picodet-m_esnet_300e_coco-416.py', 416, 2.15, 2.50),
    ('picodet-l_esnet_250e_coco-640.py', 640, 3.30, 8.91),
    ('picodet_shufflenetv2-1x_300e_coco-416.py', 416, 1.17, 1.53),
]


@pytest.mark.slow
@pytest.mark.parametrize('name,size,params_m,gflops', PUBLISHED)
def test_configs_build_at_the_published_sizes(name: str, size: int, params_m: float, gflops: float) -> None:
    """Parameters with BN unfolded (BN weight and bias counted, running statistics not: what Paddle's parameter
    count sees, since its ``_mean`` / ``_variance`` are non-trainable). Measured: 0.993 / 2.153 / 3.305 / 1.179 M.
    The published numbers are rounded to 0.01 M; tolerance 1 % (10-33 k parameters): a missing or extra conv of the
    head (>= 9 k at 96 channels) or a wrong neck width moves the count by more. Folding BN would remove 2 x channels
    per BN (about 5 % here), which the published counts do not."""
    cfg = Config.fromfile(PICODET / name)
    model = build_detector(cfg)
    comp = model_complexity(model, (1, 3, size, size))
    assert comp['params'] / 1e6 == pytest.approx(params_m, rel=0.01)
    # Paddle's GFLOPs count a multiply and an add as two FLOPs: 2 x the multiply-adds counted here (convs, BN
    # unfolded) is 0.702 / 2.423 / 8.672 / 1.486 G against 0.73 / 2.50 / 8.91 / 1.53, 2.7-3.8 % below: the BN,
    # activation, upsampling and elementwise operations that Paddle's counter adds and multiply-add counting leaves
    # out (a counted hard swish alone is ~4 operations per element). Bounds: 2 x MACs within [-8 %, 0 %]; multiply-adds
    # alone would be 52 % below; one (depthwise, pointwise) pair more or less per tower moves PicoDet-S by 7 %.
    assert 0.92 * gflops <= 2 * comp['flops'] / 1e9 <= gflops
    (maps,) = model.bbox_head(model.extract_feat(torch.zeros(1, 3, 64, 64)))
    assert [tuple(m.shape[1:]) for m in maps] == [(80 + 32, 8, 8), (112, 4, 4), (112, 2, 2), (112, 1, 1)]


def _names(module: torch.nn.Module) -> list[str]:
    return [k for k in module.state_dict() if not k.endswith('num_batches_tracked')]


def test_parameter_names_follow_the_paddle_tables() -> None:
    """Every state-dict entry maps to one PaddleDetection parameter by the tables of the modules' docstrings."""
    neck = CSPPAN([96, 192, 384], 96, num_features=4)
    paddle_bn = {'weight', 'bias', 'running_mean', 'running_var'}
    block = r'(main_conv|short_conv|final_conv|blocks\.\d+\.conv1)\.(conv\.weight|bn\.\w+)|blocks\.\d+\.conv2\.' \
            r'(dwconv\.weight|pwconv\.weight|bn[12]\.\w+)'
    dp = r'(dwconv\.weight|pwconv\.weight|bn[12]\.\w+)'
    patterns = [r'conv_t\.convs\.\d\.(conv\.weight|bn\.\w+)', rf'(top_down_blocks|bottom_up_blocks)\.\d\.({block})',
                rf'(downsamples\.\d|first_top_conv|second_top_conv)\.{dp}']
    for key in _names(neck):
        assert any(re.fullmatch(p, key) for p in patterns), key
        if '.bn' in key:
            assert key.rsplit('.', 1)[1] in paddle_bn
    assert neck.first_top_conv.dwconv.weight.shape == (96, 1, 5, 5)
    head = PicoHead(80, 96, stacked_convs=2, test_cfg=TEST_CFG)
    keys = _names(head)
    assert keys[0] == 'integral.project'  # mmdet's Integral buffer (Paddle's distribution_project is not saved)
    conv = r'conv_feat\.cls_conv_(dw|pw)\.[0-3]\.[01]\.(conv\.weight|norm\.(weight|bias|running_mean|running_var))'
    for key in keys[1:]:
        assert re.fullmatch(conv, key) or re.fullmatch(r'head_cls\.[0-3]\.(weight|bias)', key), key
    # Paddle: 4 levels x 2 convs x (dw, pw) x (conv + 4 BN tensors) + 4 x (head_cls weight, bias)
    assert len(keys) - 1 == 4 * 2 * 2 * 5 + 4 * 2
    split = PicoHead(80, 96, stacked_convs=2, share_cls_reg=False, test_cfg=TEST_CFG)
    assert split.head_cls[0].weight.shape[0] == 80 and split.head_reg[0].weight.shape[0] == 32
    assert any(k.startswith('conv_feat.reg_conv_dw.3.1.') for k in _names(split))


def test_head_init_is_paddles() -> None:
    head = PicoHead(80, 96, stacked_convs=2, test_cfg=TEST_CFG)
    head.init_weights()
    bias = head.head_cls[0].bias
    assert torch.allclose(bias, torch.full_like(bias, -4.59512), atol=1e-4)  # -log((1 - 0.01) / 0.01), every channel


@pytest.fixture(scope='module')
def tiny() -> torch.nn.Module:
    """PicoDet-S (mini config, 4 classes) with random BN statistics and spread class / distance logits."""
    torch.manual_seed(0)
    model = build_detector(REPO / 'configs/mini/picodet-s_esnet_mini-coco.py')
    randomize_bn(model, 0, with_weights=True)
    with torch.no_grad():
        for conv in model.bbox_head.head_cls:
            conv.weight.mul_(3.0)
            conv.bias[:4].copy_(torch.rand(4) * 2 - 3)
    return model.eval()


def test_fold_and_predict_reproduce_paddles_decoding(tiny) -> None:
    """switch_to_deploy folds every BN exactly; predict_by_feat = cell-centre points, integral x stride, Paddle's
    per-level top-k of points by their best score."""
    x = torch.randn(1, 3, 64, 96)
    folded = copy.deepcopy(tiny)
    switch_to_deploy(folded)
    assert count_batchnorm(folded.neck) == 0 and count_batchnorm(folded.bbox_head) == 0
    with torch.no_grad():
        (ref,) = tiny.bbox_head(tiny.extract_feat(x))
        (got,) = folded.bbox_head(folded.extract_feat(x))
    for r, g in zip(ref, got):
        torch.testing.assert_close(g, r, atol=1e-4 * max(1.0, float(r.abs().max())), rtol=1e-4)
    head = tiny.bbox_head
    meta = dict(img_shape=(64, 96), scale_factor=(1.0, 1.0))
    cfg = ConfigDict(TEST_CFG, nms_pre=20, score_thr=0.0, max_per_img=10000, nms=dict(type='nms',
                                                                                      iou_threshold=1.0))
    res = head.predict_by_feat(ref, [meta], cfg=cfg)[0]
    # manual decoding: level 0 of 8 x 12 points, keep the 20 best points
    out = ref[0][0]
    flat = out.flatten(1).t()
    scores = flat[:, :4].sigmoid()
    top = scores.max(1)[0].topk(20)[1]
    ys, xs = top // 12, top % 12
    dist = torch.softmax(flat[top, 4:].reshape(-1, 4, 8), -1) @ torch.arange(8.0) * 8
    cx, cy = (xs + 0.5) * 8, (ys + 0.5) * 8
    boxes = torch.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], 1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, 96)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, 64)
    for j in range(20):
        for c in range(4):
            hit = ((res.bboxes - boxes[j]).abs().max(1)[0] < 1e-4) & (res.labels == c)
            assert hit.sum() == 1 and torch.isclose(res.scores[hit][0], scores[top[j], c])
    level0 = sum(1 for b in res.bboxes if any((b - boxes[j]).abs().max() < 1e-4 for j in range(20)))
    assert len(res.bboxes) == 4 * (20 + 20 + 6 + 2) and level0 == 4 * 20  # 20 of 96, 20 of 24, 6, 2 points


def test_nms_top_k_keeps_the_best_of_each_class(tiny) -> None:
    head = tiny.bbox_head
    boxes = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]])
    scores = torch.tensor([[0.9, 0.2], [0.5, 0.8], [0.7, 0.6]])
    cfg = ConfigDict(TEST_CFG, nms_top_k=1, score_thr=0.1)
    res = head._select(boxes, scores, cfg, dict(scale_factor=(1.0, 1.0)), rescale=False, with_nms=True)
    assert sorted(zip(res.labels.tolist(), res.scores.tolist())) == [(0, pytest.approx(0.9)),
                                                                     (1, pytest.approx(0.8))]


def test_loss_trains_every_parameter(tiny) -> None:
    model = copy.deepcopy(tiny).train()
    head = model.bbox_head
    feats = model.extract_feat(torch.randn(2, 3, 64, 64))
    (maps,) = head(feats)
    gts = [InstanceData(bboxes=torch.tensor([[4.0, 6, 40, 50], [30, 10, 60, 34]]), labels=torch.tensor([1, 3])),
           InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))]
    metas = [dict(img_shape=(64, 64), scale_factor=(1.0, 1.0))] * 2
    losses = head.loss_by_feat(maps, gts, metas)
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_dfl'}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in head.parameters())
    assert all(p.grad is not None for p in model.neck.parameters())
    # no ground truth anywhere: zero box losses, every parameter still in the graph
    empty = head.loss_by_feat(maps, [gts[1], gts[1]], metas)
    assert float(empty['loss_bbox']) == 0.0 and float(empty['loss_cls']) > 0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match='num_features'):
        CSPPAN([8, 16, 32], 8, num_features=5)
    with pytest.raises(ValueError, match='levels'):
        PicoHead(4, 8, stacked_convs=1, test_cfg=TEST_CFG)([torch.zeros(1, 8, 4, 4)])
    with pytest.raises(ValueError, match='sigmoid'):
        PicoHead(4, 8, loss_cls=dict(type='VarifocalLoss', use_sigmoid=False))
