"""The tiny DetNAS search of the NAS and bad-input suites: a 5-unit supernet space and its search config."""
from __future__ import annotations

from pathlib import Path

from tiny_mini_coco import REPO, TINY_PIPELINES

SUPERNET_MINI = REPO / 'configs' / 'nas' / 'retinanet_detnas-supernet-300m_fpn_mini-coco.py'
SPACE = dict(stem_channels=8, stage_channels=[16, 24, 32, 48], last_channels=64, repeats=[1, 1, 2, 1])

def write_search_config(path: Path, data_root: Path, flops_limit: float | None) -> Path:
    """The mini supernet search config shrunk: a 5-unit supernet, a 16-channel RetinaNet, 64x64 images."""
    root = f'{data_root}/'
    path.write_text(f'''
_base_ = {str(SUPERNET_MINI)!r}
data_root = {root!r}
{TINY_PIPELINES}
model = dict(
    backbone=dict(space=dict(_delete_=True, **{SPACE!r})),
    neck=dict(in_channels=[24, 32, 48], out_channels=16),
    bbox_head=dict(in_channels=16, feat_channels=16, stacked_convs=1),
    test_cfg=dict(score_thr=0.0, max_per_img=20))  # an untrained detector: keep its weak detections
train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root, pipeline=train_pipeline))
train_cfg = dict(max_epochs=1, val_interval=1)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0, end=1)]
default_hooks = dict(logger=dict(interval=1))
log_processor = dict(window_size=1)
_data = dict(data_root=data_root, pipeline=test_pipeline)
nas_search = dict(
    population_size=4, top_k=2, num_mutation=1, num_crossover=1, generations=2, mutation_prob=0.3,
    flops_limit={flops_limit!r}, flops_mode='backbone', flops_input=64, num_calib_batches=2,
    calib_dataloader=dict(batch_size=2, dataset=_data),
    val_dataloader=dict(batch_size=2, dataset=_data),
    val_evaluator=dict(ann_file=data_root + 'annotations/instances_train2017_nas-val.json'),
    references=[], subnet_config=None)
''')
    return path
