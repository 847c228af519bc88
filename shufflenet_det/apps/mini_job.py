"""The mini-COCO job: make the synthetic dataset, train a detector on the CPU, evaluate COCO bbox mAP, draw detections.

The body of ``tools/main_job.py`` (one detector) and of ``tools/analysis_tools/side_by_side.py`` (ShuffleNet V2 vs
ResNet-18 on the same data and schedule, :mod:`.side_by_side`). Every run writes ``<work_dir>/results.json``
(metrics, timings, parameters, multiply-adds, environment) and ``<work_dir>/detections.png`` (ground truth |
prediction for validation images). Config paths come from the caller: the library never assumes where a checkout
keeps its ``configs/`` (:func:`mini_config` joins a name of :data:`MINI_CONFIGS` to the folder the tool passes).
"""
from __future__ import annotations

import copy
import os
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, cast

import numpy as np
import torch
from mmengine.config import Config
from mmengine.hooks import Hook

from ..utils.io import atomic_outputs, write_json_atomic
from ..utils.predict import tensor_mode

if TYPE_CHECKING:
    from mmengine.runner import Runner

    from ..datasets import MiniCocoSpec

#: Short names of the mini configs -> their paths relative to a configs folder (the repository's ``configs/``).
MINI_CONFIGS = {
    'retinanet': 'mini/retinanet_shufflenetv2-1x_fpn_mini-coco.py',
    'faster-rcnn': 'mini/faster-rcnn_shufflenetv2-1x_fpn_mini-coco.py',
    'retinanet-r18': 'mini/retinanet_r18_fpn_mini-coco.py',
    'lite': 'mini/lite-m_shufflenetv2-1x_mini-coco.py',
    'lite-s': 'mini/lite-s_shufflenetv2-0.5x_mini-coco.py',
    'lite-l': 'mini/lite-l_shufflenetv2-1.5x_mini-coco.py',
    'lite-detnas': 'mini/lite-m_detnas-coco-fpn-300m_mini-coco.py',
    'picodet-s': 'mini/picodet-s_esnet_mini-coco.py',
}
METRIC_KEYS = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s', 'bbox_mAP_m', 'bbox_mAP_l')


def mini_config(name: str, config_root: str | os.PathLike) -> str:
    """The path of the mini config ``name`` (a key of :data:`MINI_CONFIGS`) inside the folder ``config_root``."""
    if name not in MINI_CONFIGS:
        raise ValueError(f'unknown mini config {name!r}; choose one of {sorted(MINI_CONFIGS)}')
    return str(Path(config_root) / MINI_CONFIGS[name])


class _JobRecorder(Hook):
    """Collects the validation metrics and the wall time of every training iteration."""

    priority = 'LOWEST'

    def __init__(self) -> None:
        self.metrics: Optional[dict[str, float]] = None  # stays None until a validation epoch ends
        self.iter_times: list[float] = []
        self._start = 0.0

    def before_train_iter(self, runner: Runner, batch_idx: int, data_batch: Optional[Any] = None) -> None:
        self._start = time.perf_counter()

    def after_train_iter(self, runner: Runner, batch_idx: int, data_batch: Optional[Any] = None,
                         outputs: Optional[Any] = None) -> None:
        self.iter_times.append(time.perf_counter() - self._start)

    def after_val_epoch(self, runner: Runner, metrics: Optional[dict[str, float]] = None) -> None:
        self.metrics = dict(metrics or {})


def point_config_at(cfg: Config, data_root: str) -> None:
    """Make every dataset and evaluator of ``cfg`` read the mini COCO layout under ``data_root``."""
    from ..datasets.layout import iter_datasets
    root = data_root.rstrip('/') + '/'
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(key):
            for ds in iter_datasets(cfg[key]['dataset']):
                cast(Any, ds)['data_root'] = root  # config dicts, changed in place
    for key in ('val_evaluator', 'test_evaluator'):
        ev = cfg.get(key)
        for item in ev if isinstance(ev, (list, tuple)) else [ev] if ev else []:
            if item.get('ann_file'):
                item['ann_file'] = root + 'annotations/' + os.path.basename(item['ann_file'])


def draw_detections(runner: Runner, out_file: Path, num_images: int = 8, score_thr: float = 0.3,
                    columns: int = 2) -> Path:
    """Predict the first ``num_images`` validation images and save ground truth | prediction pairs as one PNG."""
    from mmengine.dataset import pseudo_collate
    from PIL import Image

    dataset = runner.val_dataloader.dataset
    visualizer = runner.visualizer
    visualizer.dataset_meta = dataset.metainfo
    model = runner.model
    model.eval()
    tiles = []
    with torch.no_grad():
        for idx in range(min(num_images, len(dataset))):
            item = dataset[idx]
            sample = model.test_step(pseudo_collate([item]))[0]
            image = np.asarray(Image.open(sample.img_path).convert('RGB'))
            visualizer.add_datasample(f'val_{idx}', image, data_sample=sample, draw_gt=True, draw_pred=True,
                                      pred_score_thr=score_thr)
            tiles.append(visualizer.get_image())
    if not tiles:
        raise RuntimeError('the validation set is empty: nothing to draw')
    h, w = max(t.shape[0] for t in tiles), max(t.shape[1] for t in tiles)
    rows = (len(tiles) + columns - 1) // columns
    grid = np.full((rows * h, columns * w, 3), 255, dtype=np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        grid[r * h:r * h + tile.shape[0], c * w:c * w + tile.shape[1]] = tile
    with atomic_outputs([out_file], 'detections picture') as (tmp,):
        Image.fromarray(grid).save(tmp, format='PNG')
    return out_file


def used_parameters(model: torch.nn.Module, image_size: Sequence[int]) -> int:
    """Parameters that take part in the forward pass (those a backward pass reaches): a backbone keeps the modules
    of outputs it does not return (e.g. ShuffleNet V2's conv5), which cost nothing at run time."""
    was_training = model.training
    model.eval()
    try:
        model.zero_grad(set_to_none=True)
        outputs = tensor_mode(model, (1, 3, *image_size))(torch.randn(1, 3, *image_size))
        sum(o.float().sum() for o in outputs).backward()
        used = sum(p.numel() for p in model.parameters() if p.grad is not None)
        model.zero_grad(set_to_none=True)
    finally:
        model.train(was_training)
    return int(used)


def run_job(config: str,
            work_dir: str,
            data_root: str = 'data/mini_coco',
            cfg_options: Optional[dict] = None,
            num_vis: int = 8,
            resume: bool = False,
            spec: Optional[MiniCocoSpec] = None,
            overwrite: bool = False) -> dict[str, Any]:
    """Generate the dataset (``spec``, default: the generator's defaults) if needed, train ``config``, evaluate,
    draw ``num_vis`` validation images (0: no picture; ``picture`` is then None); return (and write) the results
    dict.

    A dataset of another spec at ``data_root`` is replaced only with ``overwrite`` (FileExistsError otherwise);
    ``resume`` needs a checkpoint in ``work_dir`` (ValueError naming ``--work-dir`` otherwise).
    """
    from ..analysis import model_complexity
    from ..datasets import MiniCocoSpec, ensure
    from .launch import build_runner, check_resume_work_dir, load_run_config, prepare_for

    if int(num_vis) != num_vis or num_vis < 0:
        raise ValueError(f'num_vis must be an integer >= 0 (0: no detections picture), got {num_vis!r}')
    if resume:
        check_resume_work_dir(work_dir)
    job_start = time.perf_counter()
    spec = spec or MiniCocoSpec()
    t0 = time.perf_counter()
    generated = ensure(data_root, spec, overwrite=overwrite)
    data_s = time.perf_counter() - t0
    print(f'[main job] dataset {data_root}: {"generated" if generated else "reused"} '
          f'({spec.num_train} train / {spec.num_val} val images, {spec.image_width}x{spec.image_height}) '
          f'in {data_s:.1f} s', flush=True)

    cfg = load_run_config(config, cfg_options, 'none', work_dir)
    point_config_at(cfg, data_root)
    if resume:
        cfg.resume, cfg.load_from = True, None
    prepare_for(cfg, phases=('train', 'val'), check_pretrained=True)
    runner = build_runner(cfg)
    recorder = _JobRecorder()
    runner.register_hook(recorder)
    t0 = time.perf_counter()
    runner.train()
    train_s = time.perf_counter() - t0
    if recorder.metrics is None:  # resumed after the last epoch, or val_interval skipped the end: evaluate now
        recorder.metrics = runner.val()

    model = runner.model
    image_size = tuple(cfg.get('image_size', (256, 256)))[::-1]  # config (w, h) -> (h, w)
    complexity = model_complexity(model, image_size)
    vis_path = draw_detections(runner, Path(work_dir) / 'detections.png', num_images=num_vis) if num_vis else None

    metrics = {k.split('/')[-1]: float(v) for k, v in recorder.metrics.items() if k.startswith('coco/')}
    if not metrics:  # mmdet's CocoMetric returns nothing when no image has a detection above score_thr: AP 0
        metrics = dict.fromkeys(METRIC_KEYS, 0.0)
    iters = len(recorder.iter_times)
    steady = recorder.iter_times[min(10, iters // 10):]  # the first iterations include one-off start-up costs
    results = dict(
        config=config,
        work_dir=str(work_dir),
        dataset=dict(root=data_root, generated=generated, seconds=round(data_s, 2), spec=spec.to_dict()),
        metrics=metrics,
        train=dict(
            epochs=int(cfg.train_cfg.max_epochs), iterations=iters,
            batch_size=int(cfg.train_dataloader.batch_size), seconds=round(train_s, 1),
            seconds_per_iter=round(float(np.mean(steady)), 4) if steady else None),
        model=dict(params=complexity['params'], params_used=used_parameters(model, image_size),
                   flops=complexity['flops'], flops_input=list(complexity['input_shape']),
                   flops_counted='multiply-adds of convolutions and matrix products (shufflenet_det.analysis)'),
        picture=str(vis_path) if vis_path is not None else None,
        job_seconds=round(time.perf_counter() - job_start, 1),
        environment=dict(torch=torch.__version__, threads=torch.get_num_threads(), cpus=os.cpu_count(),
                         processor=platform.processor() or platform.machine(),
                         load_average=list(os.getloadavg()) if hasattr(os, 'getloadavg') else None),
    )
    write_json_atomic(results, Path(work_dir) / 'results.json', what='results')
    return results


def interleaved_step_times(configs: dict[str, str], data_root: str, rounds: int = 8,
                           warmup: int = 2) -> dict[str, float]:
    """Median seconds per training step (forward, backward, optimizer) of each config, measured in alternation.

    The training runs of two models are minutes apart, so on a shared machine their seconds/iteration reflect
    whatever else ran at the time; stepping the models in turn on the same batch of real training images puts both
    under the same conditions, which makes the ratio meaningful.
    """
    from mmengine.optim import build_optim_wrapper
    from mmengine.runner import Runner

    from ..utils.build import build_model, load_config

    models, wrappers, batch = {}, {}, None
    for name, config in configs.items():
        cfg = load_config(config)  # also initialises mmdet's scope, where the dataset and transforms are looked up
        point_config_at(cfg, data_root)
        if batch is None:
            loader_cfg = copy.deepcopy(cfg.train_dataloader)
            loader_cfg['sampler'] = dict(type='DefaultSampler', shuffle=False)
            batch = next(iter(Runner.build_dataloader(loader_cfg, seed=0)))
        models[name] = build_model(cfg.model, init=True)
        models[name].train()
        wrappers[name] = build_optim_wrapper(models[name], cfg.optim_wrapper)
    times: dict[str, list[float]] = {name: [] for name in configs}
    for step in range(warmup + rounds):
        for name, model in models.items():
            start = time.perf_counter()
            cast(Any, model).train_step(batch, wrappers[name])
            if step >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: round(float(np.median(t)), 4) for name, t in times.items()}


def format_table(results: dict[str, Any], title: Optional[str] = None) -> str:
    """The COCO bbox metrics, per-class AP and cost figures of one job as a text table."""
    m = results['metrics']
    lines = [title or f"bbox mAP on the mini COCO val set ({results['config']})"]
    lines.append(' '.join(f'{k.replace("bbox_", ""):>8}' for k in METRIC_KEYS))
    lines.append(' '.join(f'{m.get(k, float("nan")):8.3f}' for k in METRIC_KEYS))
    per_class = {k[:-len('_precision')]: v for k, v in m.items() if k.endswith('_precision')}
    if per_class:
        lines.append('per class AP: ' + ', '.join(f'{k} {v:.3f}' for k, v in per_class.items()))
    t, mod = results['train'], results['model']
    per_iter = 'n/a' if t['seconds_per_iter'] is None else t['seconds_per_iter']  # None: no iteration ran (resume)
    lines.append(f"train: {t['epochs']} epochs, {t['iterations']} iterations of {t['batch_size']} images in "
                 f"{t['seconds']:.0f} s ({per_iter} s/iter); whole job {results['job_seconds']:.0f} s "
                 f"on {results['environment']['threads']} threads")
    lines.append(f"model: {mod['params'] / 1e6:.2f} M params ({mod['params_used'] / 1e6:.2f} M used), "
                 f"{mod['flops'] / 1e9:.3f} G multiply-adds at {mod['flops_input'][2]}x{mod['flops_input'][3]}")
    lines.append(f"detections picture: {results.get('picture') or 'none (--num-vis 0)'}")
    return '\n'.join(lines)
