"""Helpers for the tool tests: a tiny mini-COCO dataset and a config that trains on it in seconds."""
from __future__ import annotations

import subprocess
from pathlib import Path

from helpers import REPO, load_script  # noqa: F401  (re-exported for the tool tests)
from shufflenet_det.datasets.mini_coco import MiniCocoSpec, generate
from zygote import run_python

MINI_RETINANET = REPO / 'configs' / 'mini' / 'retinanet_shufflenetv2-1x_fpn_mini-coco.py'
TINY_SPEC = MiniCocoSpec(num_train=16, num_val=4, image_width=64, image_height=64, min_objects=1, max_objects=2,
                         min_size=12, max_size=28)


#: Config lines: 64x64 train / test pipelines for the tiny dataset (mmdet's transforms).
TINY_PIPELINES = '''image_size = (64, 64)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
'''


def make_dataset(root: Path) -> Path:
    return generate(root, TINY_SPEC)


def write_config(path: Path, data_root: Path, base: Path = MINI_RETINANET, max_epochs: int = 3,
                 batch_size: int = 2) -> Path:
    """A config inheriting ``base`` that trains ``max_epochs`` short epochs on 64x64 images at ``data_root``."""
    root = f'{data_root}/'
    path.write_text(f'''
_base_ = {str(base)!r}
data_root = {root!r}
{TINY_PIPELINES}train_dataloader = dict(batch_size={batch_size},
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json', classwise=False)
test_evaluator = val_evaluator
train_cfg = dict(max_epochs={max_epochs}, val_interval={max_epochs})
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0, end=1)]
default_hooks = dict(logger=dict(interval=1))
log_processor = dict(window_size=1)
''')
    return path


def run_tool(args: list[str], timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run ``python <args>`` from the repository root with one thread (the test machines are small), as its own
    process forked from the tests' zygote (:func:`zygote.run_python`)."""
    return run_python(args, timeout=timeout, **kwargs)
