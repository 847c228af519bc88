"""The plugin as a user of another mmdet project meets it: their own config, in their own folder, mmdet's own tools.

* a config with ``custom_imports=dict(imports=['shufflenet_det'])`` on mmdet's ``mmdet::`` bases trains with mmdet's
  own ``tools/train.py`` (the one inside the installed mmdet package), resumes with ``--resume``, and the Runner
  checkpoint exports to ONNX with parity;
* a config inheriting this package's configs as ``shufflenet_det::<path>`` trains through
  ``python -m shufflenet_det.apps.mmdet_tool train`` (mmdet's own tool with the plugin imported first).

Run from a temporary folder outside the repository, on both stacks (compat suite).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO
from tiny_mini_coco import TINY_PIPELINES

pytestmark = [pytest.mark.compat, pytest.mark.slow]

CLASSES = ('circle', 'square', 'triangle', 'cross')  # the mini-COCO generator's default classes


def _data_part(data_root: Path) -> str:
    root = f'{data_root}/'
    return f'''
data_root = {root!r}
metainfo = dict(classes={CLASSES!r})
{TINY_PIPELINES}train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_train2017.json',
                 data_prefix=dict(img='train2017/'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_val2017.json',
                 data_prefix=dict(img='val2017/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1, val_interval=1)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0, end=1)]
default_hooks = dict(logger=dict(interval=2), checkpoint=dict(interval=1))
log_processor = dict(window_size=1)
randomness = dict(seed=0)
'''


def _run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    env.pop('PYTHONPATH', None)  # nothing of the repository on the path: the installed package only
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _mmdet_train() -> str:
    import mmdet
    path = Path(mmdet.__file__).parent / '.mim' / 'tools' / 'train.py'
    assert path.is_file(), f'mmdet ships no tools/train.py at {path}'
    return str(path)


def test_custom_imports_config_trains_resumes_and_exports(tiny_coco: Path, tmp_path: Path) -> None:
    project = tmp_path / 'my_project'
    project.mkdir()
    cfg = project / 'retinanet_shufflenetv2_mine.py'
    cfg.write_text('''
_base_ = ['mmdet::_base_/models/retinanet_r50_fpn.py', 'mmdet::_base_/datasets/coco_detection.py',
          'mmdet::_base_/schedules/schedule_1x.py', 'mmdet::_base_/default_runtime.py']
custom_imports = dict(imports=['shufflenet_det'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='ShuffleNetV2', widen_factor=0.5, out_indices=(1, 2, 3)),
    neck=dict(in_channels=[48, 96, 192], out_channels=32, start_level=0, num_outs=5),
    bbox_head=dict(num_classes=4, in_channels=32, feat_channels=32, stacked_convs=1))
''' + _data_part(tiny_coco))
    work = project / 'work'
    first = _run([_mmdet_train(), str(cfg), '--work-dir', str(work)], cwd=project)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert (work / 'epoch_1.pth').is_file()
    assert 'coco/bbox_mAP' in first.stdout + first.stderr

    resumed = _run([_mmdet_train(), str(cfg), '--work-dir', str(work), '--resume',
                    '--cfg-options', 'train_cfg.max_epochs=2'], cwd=project)
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-3000:]
    assert 'resumed epoch: 1' in log, log[-3000:]
    assert (work / 'epoch_2.pth').is_file()

    onnx_path = project / 'deploy' / 'mine.onnx'
    export = _run([str(REPO / 'tools' / 'deploy' / 'export_onnx.py'), '--config', str(cfg), '--checkpoint',
                   str(work / 'epoch_2.pth'), '--out', str(onnx_path), '--shape', '64', '64'], cwd=project)
    assert export.returncode == 0, export.stdout[-3000:] + export.stderr[-3000:]
    assert onnx_path.is_file()
    assert 'PASSED' in export.stdout, export.stdout


def test_shufflenet_det_scoped_base_config(tiny_coco: Path, tmp_path: Path) -> None:
    project = tmp_path / 'scoped'
    project.mkdir()
    cfg = project / 'mine.py'
    cfg.write_text('''
_base_ = 'shufflenet_det::mini/retinanet_shufflenetv2-1x_fpn_mini-coco.py'
custom_imports = dict(imports=['shufflenet_det'], allow_failed_imports=False)
model = dict(backbone=dict(widen_factor=0.5), neck=dict(in_channels=[48, 96, 192], out_channels=32),
             bbox_head=dict(in_channels=32, feat_channels=32, stacked_convs=1))
''' + _data_part(tiny_coco))
    work = project / 'work'
    proc = _run(['-m', 'shufflenet_det.apps.mmdet_tool', 'train', str(cfg), '--work-dir', str(work)], cwd=project)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (work / 'epoch_1.pth').is_file()
    unknown = _run(['-m', 'shufflenet_det.apps.mmdet_tool', 'no_such_tool'], cwd=project)
    assert unknown.returncode == 2 and "mmdet has no tool 'no_such_tool'" in unknown.stderr
