"""What ``tools/train.py``, ``tools/test.py`` and the mini job do before handing a config to mmengine's Runner.

The tools behave like mmdet's own tools (same flags, same ``work_dirs/<config name>`` default) and add three checks that
fail in seconds with an actionable message instead of minutes later with a traceback:

* the data the config reads exists and is readable (:func:`shufflenet_det.datasets.check_config_data`);
* the ImageNet checkpoints named by ``init_cfg=dict(type='Pretrained', ...)`` exist (:func:`check_pretrained_files`);
* a distributed launch on a machine without CUDA uses the ``gloo`` backend and a CPU DDP wrapper
  (:func:`select_dist_backend`), since mmdet's default runtime asks for ``nccl`` and GPU device ids.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import os
import os.path as osp
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Optional, Sequence

from mmengine.config import Config
from mmengine.logging import print_log

from ..utils.build import load_config

if TYPE_CHECKING:
    from mmengine.runner import Runner

CONVERT_HINT = ('convert the ImageNet weights with tools/model_converters/convert_weights.py (the comment at the top '
                'of the config gives the exact command), or train from scratch with '
                '--cfg-options model.backbone.init_cfg=None')


class PretrainedWeightsMissing(FileNotFoundError):
    """An ``init_cfg`` of type ``Pretrained`` names a local file that does not exist."""


def default_work_dir(config_path: str) -> str:
    """``./work_dirs/<config file name without .py>``, as mmdet's tools."""
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def load_run_config(config: str,
                    cfg_options: Optional[Mapping[str, Any]] = None,
                    launcher: str = 'none',
                    work_dir: Optional[str] = None) -> Config:
    """The config of a training / testing run: ``config`` loaded by :func:`shufflenet_det.utils.build.load_config`
    (:class:`~shufflenet_det.utils.build.ConfigError` naming the file when it is missing or broken), with the
    launcher set, ``--cfg-options`` merged (after the launcher, so they may override it) and the work dir set
    (CLI > config > ``work_dirs/<config name>``)."""
    cfg = load_config(config)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(dict(cfg_options))
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = default_work_dir(config)
    return cfg


def select_dist_backend(cfg: Config, cuda_available: Optional[bool] = None) -> Optional[str]:
    """Prepare a distributed launch without CUDA; return the backend that will be used (None if not distributed).

    mmdet's default runtime asks for NCCL, which needs GPUs: without CUDA, ``nccl`` becomes ``gloo`` (a backend set
    explicitly to something else is kept). mmengine also wraps the model in DDP with ``device_ids=[LOCAL_RANK]``,
    which DDP rejects for a CPU model: the wrapper is given ``device_ids=None`` (DDP's setting for CPU modules).
    """
    if cfg.get('launcher', 'none') == 'none':
        return None
    if cuda_available is None:
        import torch
        cuda_available = torch.cuda.is_available()
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    backend = dist_cfg.get('backend', 'nccl')
    if cuda_available:
        return backend
    if backend == 'nccl':
        dist_cfg['backend'] = backend = 'gloo'
        print_log('CUDA is not available: using the gloo backend instead of nccl for distributed training',
                  logger='current', level=logging.WARNING)
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))  # what mmengine's default wrapper gets
    wrapper.setdefault('device_ids', None)
    cfg.model_wrapper_cfg = wrapper
    return backend


def _iter_init_cfgs(obj: Any, path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if isinstance(obj, Mapping):
        init_cfg = obj.get('init_cfg')
        for item in (init_cfg if isinstance(init_cfg, Sequence) and not isinstance(init_cfg, str) else [init_cfg]):
            if isinstance(item, Mapping):
                yield f'{path}.init_cfg', item
        for key, value in obj.items():
            if key != 'init_cfg':
                yield from _iter_init_cfgs(value, f'{path}.{key}')
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _iter_init_cfgs(value, f'{path}[{i}]')


def check_pretrained_files(cfg: Mapping[str, Any]) -> None:
    """Raise :class:`PretrainedWeightsMissing` for a ``Pretrained`` init_cfg whose local checkpoint is missing.

    URLs and ``scheme://`` names (``torchvision://``, ``open-mmlab://`` ...) are resolved by mmengine and skipped.
    """
    for where, init_cfg in _iter_init_cfgs(cfg.get('model', {}), 'model'):
        if init_cfg.get('type') != 'Pretrained':
            continue
        ckpt = init_cfg.get('checkpoint')
        if isinstance(ckpt, str) and '://' not in ckpt and not osp.isfile(ckpt):
            raise PretrainedWeightsMissing(
                f'pretrained checkpoint {ckpt!r} ({where}) does not exist (relative paths are resolved from '
                f'{os.getcwd()}); {CONVERT_HINT}')


def build_runner(cfg: Config) -> Runner:
    """mmengine's default Runner, or the registered one named by ``runner_type`` (as mmdet's tools)."""
    from mmdet.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)


@contextlib.contextmanager
def distributed_session() -> Iterator[None]:
    """Run a tool's Runner and tear the default process group down before the interpreter exits.

    A gloo process group left for interpreter finalization can abort a rank ("terminate called without an active
    exception", SIGABRT) after the work has finished: its worker threads still hold work when Python is being torn
    down (pytorch/pytorch#190489; the atexit fix pytorch/pytorch#179291 was abandoned). mmengine's Runner never
    destroys the group, and its DDP wrapper keeps the group alive through its reducer, so the tool drops the Runner
    inside the ``with`` block; on leaving it the garbage is collected, the ranks meet at a barrier (skipped when
    leaving on an error: the other ranks may never get there) and the group is destroyed.
    """
    import torch.distributed as dist
    ok = False
    try:
        yield
        ok = True
    finally:
        gc.collect()
        if dist.is_available() and dist.is_initialized():
            if ok:
                dist.barrier()
            dist.destroy_process_group()


def start_tool(local_rank: int) -> None:
    """What mmdet's train and test tools do before loading a config: ``LOCAL_RANK`` from ``--local-rank``, mmdet's
    modules registered (without making ``mmdet`` the default scope yet), dynamo's cache size limit."""
    from mmdet.utils import register_all_modules, setup_cache_size_limit_of_dynamo
    set_local_rank_env(local_rank)
    register_all_modules(init_default_scope=False)
    setup_cache_size_limit_of_dynamo()


def set_local_rank_env(local_rank: int) -> None:
    """Set ``LOCAL_RANK`` from ``--local-rank`` (what ``torch.distributed.launch`` passes) unless it is set already
    (torchrun sets it): the environment stays authoritative."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(local_rank)


def prepare_for(cfg: Config, phases: Sequence[str], check_pretrained: bool) -> None:
    """The checks and settings both tools apply before building the Runner (see module docstring)."""
    from ..datasets import check_config_data
    check_config_data(cfg, phases)
    if check_pretrained:
        check_pretrained_files(cfg)
    select_dist_backend(cfg)
