"""The compatibility fixes: an mmengine Runner trains, saves, loads and resumes under the safe loading policy.

On torch >= 2.4 the policy is torch's own ``weights_only=True`` with the mmengine globals allow-listed; on older torch
(the openmmlab stack's 2.1.2) mmengine's loader reads through the restricted unpickler. Both refuse other objects.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.runner import Runner, load_checkpoint
from mmengine.structures import InstanceData
from torch.utils.data import Dataset

import shufflenet_det  # noqa: F401  (applies compat)
from shufflenet_det.utils.checkpoint import HAS_SAFE_GLOBALS, torch_load_safe

pytestmark = pytest.mark.compat  # also run on the OpenMMLab-standard stack (make test-openmmlab)


class _TinyBoxes(Dataset):
    """Four 64x64 images, one bright square each: enough for a few RetinaNet iterations."""

    metainfo = dict(classes=('square', ))

    def __len__(self) -> int:
        return 4

    def __getitem__(self, idx: int) -> dict:
        img = torch.zeros(3, 64, 64, dtype=torch.uint8)
        x0, y0 = 8 + 6 * idx, 10 + 4 * idx
        img[:, y0:y0 + 24, x0:x0 + 24] = 200
        sample = DetDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64),
                                             scale_factor=(1.0, 1.0), img_id=idx))
        sample.gt_instances = InstanceData(bboxes=torch.tensor([[x0, y0, x0 + 24, y0 + 24]], dtype=torch.float32),
                                           labels=torch.tensor([0]))
        return dict(inputs=img, data_samples=sample)


def _model_cfg() -> dict:
    return dict(
        type='RetinaNet',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[0, 0, 0], std=[255, 255, 255], bgr_to_rgb=False),
        backbone=dict(type='ShuffleNetV2', widen_factor=0.5, out_indices=(1, )),
        neck=None,
        bbox_head=dict(
            type='RetinaHead', num_classes=1, in_channels=0, stacked_convs=1, feat_channels=16,
            anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4, scales_per_octave=1,
                                  ratios=[1.0], strides=[8]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=[1.0] * 4),
            loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        train_cfg=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                                     ignore_iof_thr=-1),
                       sampler=dict(type='PseudoSampler'), allowed_border=-1, pos_weight=-1, debug=False),
        test_cfg=dict(nms_pre=100, min_bbox_size=0, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5),
                      max_per_img=10))


def _runner(work_dir: Path, max_iters: int, resume: bool = False, load_from: str | None = None) -> Runner:
    model = _model_cfg()
    # FPN-free: the head reads the backbone's single stride-8 map, whose width the backbone reports itself
    model['bbox_head']['in_channels'] = MODELS.build(model['backbone']).out_channels[0]
    return Runner(
        model=model, work_dir=str(work_dir), experiment_name=f'it{max_iters}',
        train_dataloader=dict(dataset=_TinyBoxes(), batch_size=2, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              collate_fn=dict(type='pseudo_collate')),
        train_cfg=dict(by_epoch=False, max_iters=max_iters, val_interval=10_000),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4)),
        param_scheduler=[dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=2)],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        default_scope='mmdet', resume=resume, load_from=load_from, randomness=dict(seed=0))


@pytest.mark.slow
def test_runner_trains_saves_loads_and_resumes_with_weights_only(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' not in os.environ
    monkeypatch.setitem(sys.modules, 'torchvision', None)  # the Runner must not need torchvision
    runner = _runner(tmp_path, max_iters=4)
    runner.train()
    ckpt = tmp_path / 'iter_4.pth'
    assert ckpt.is_file()

    # the raw file holds mmengine's non-tensor state and still loads under the policy (torch's own weights_only=True
    # loader too, where torch can allow-list globals)
    raw = torch_load_safe(ckpt)
    assert raw['meta']['iter'] == 4 and 'message_hub' in raw
    if HAS_SAFE_GLOBALS:
        assert torch.load(ckpt, map_location='cpu', weights_only=True)['meta']['iter'] == 4

    # load_checkpoint into a fresh model gives the trained weights
    fresh = _runner(tmp_path / 'fresh', max_iters=4).model
    load_checkpoint(fresh, str(ckpt), map_location='cpu')
    for (name, a), b in zip(runner.model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name  # exact: loading copies the saved tensors

    # resume=True continues from iteration 4 to 6 with the optimizer and scheduler state restored
    resumed = _runner(tmp_path, max_iters=6, resume=True, load_from=str(ckpt))
    resumed.train()
    assert resumed.iter == 6
    assert (tmp_path / 'iter_6.pth').is_file()
    scalars = resumed.message_hub.log_scalars
    assert 'train/loss' in scalars and len(scalars['train/loss'].data[0]) >= 4  # history from before the resume


class _ReachIntoHistoryBuffer:
    def __reduce__(self):  # pragma: no cover - must never be called
        from mmengine.logging.history_buffer import HistoryBuffer
        return (getattr, (HistoryBuffer, '__init__'))


class _Evil:
    def __reduce__(self):  # pragma: no cover - must never be called
        return (os.system, ('echo pwned',))


def test_arbitrary_pickled_objects_are_still_refused(tmp_path: Path) -> None:
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'payload': _Evil()}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch_load_safe(path)
    # the getattr stand-in serves HistoryBuffer's statistics methods only
    path2 = tmp_path / 'getattr.pth'
    torch.save({'x': _ReachIntoHistoryBuffer()}, path2)
    with pytest.raises(pickle.UnpicklingError, match='refusing getattr'):
        torch_load_safe(path2)
    if HAS_SAFE_GLOBALS:  # torch's own weights_only loader with the allow-list refuses them as well
        with pytest.raises(pickle.UnpicklingError):
            torch.load(path, map_location='cpu', weights_only=True)
        with pytest.raises(pickle.UnpicklingError, match='refusing getattr'):
            torch.load(path2, map_location='cpu', weights_only=True)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(torch.nn.Linear(1, 1), str(path), map_location='cpu')


@pytest.mark.slow
def test_import_registers_from_outside_the_repo(tmp_path: Path) -> None:
    code = ('import shufflenet_det; from mmdet.registry import MODELS; '
            'import mmengine; print(sorted(k for k in MODELS.module_dict if "Shuffle" in k or k in '
            '("DetNAS", "OneShot")))')
    out = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert 'ShuffleNetV2' in out.stdout


@pytest.mark.slow
def test_only_the_pkg_resources_warning_is_silenced(tmp_path: Path) -> None:
    """mmdet's start-up (mmengine's package helpers) prints no pkg_resources warning; other warnings still show."""
    code = ('import warnings, shufflenet_det, mmdet.apis; from mmengine.utils import is_installed; '
            'is_installed("mmdet"); warnings.warn("pkg_resources other message"); '
            'warnings.warn("pkg_resources is deprecated as an API", DeprecationWarning)')
    out = subprocess.run([sys.executable, '-W', 'always', '-c', code], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300, env={k: v for k, v in os.environ.items() if k != 'PYTHONWARNINGS'})
    assert out.returncode == 0, out.stderr
    assert 'pkg_resources is deprecated as an API. See' not in out.stderr, out.stderr
    assert 'UserWarning: pkg_resources other message' in out.stderr
    assert 'DeprecationWarning: pkg_resources is deprecated as an API' in out.stderr


@pytest.mark.slow
def test_import_prints_nothing(tmp_path: Path) -> None:
    """``import shufflenet_det`` (what ``custom_imports`` does) is silent on every supported stack."""
    out = subprocess.run([sys.executable, '-c', 'import shufflenet_det'], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, env={k: v for k, v in os.environ.items() if k != 'PYTHONWARNINGS'})
    assert out.returncode == 0, out.stderr
    assert out.stdout == '' and out.stderr == '', out.stdout + out.stderr
