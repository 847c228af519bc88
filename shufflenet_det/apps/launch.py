"""What ``tools/train.py``, ``tools/test.py`` and the mini job do before handing a config to mmengine's Runner.

The tools behave like mmdet's own tools (same flags, same ``work_dirs/<config name>`` default) and add checks that
fail in seconds with an actionable message instead of minutes later with a traceback:

* the data the config reads exists and is readable, images included (:func:`shufflenet_det.datasets.check_config_data`);
* the ImageNet checkpoints named by ``init_cfg=dict(type='Pretrained', ...)`` exist, are read safely and fit the
  part they initialise (:func:`check_pretrained_files`; a partial fit on request, as below);
* the backbone's output channels are what the neck expects (:func:`check_backbone_neck_channels`: the backbone is
  built, so its argument errors surface here too);
* the checkpoint a run starts from (``load_from``, ``--resume``, tools/test.py's CHECKPOINT) is a readable PyTorch
  checkpoint of this model: every key and shape fits (:func:`check_start_checkpoint`). mmengine's Runner loads
  ``load_from`` non-strictly - another width or class count would be loaded partially, with a warning lost in the
  log, and evaluated or fine-tuned as garbage; resuming one crashes inside the optimizer. A partial load stays
  possible on request (``partial_load=True``, the tools' ``--partial-load``), still listing what does not fit;
* a distributed launch on a machine without CUDA uses the ``gloo`` backend and a CPU DDP wrapper
  (:func:`select_dist_backend`), since mmdet's default runtime asks for ``nccl`` and GPU device ids.
"""
from __future__ import annotations

import contextlib
import copy
import gc
import logging
import os
import os.path as osp
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Optional, Sequence

from mmengine.config import Config
from mmengine.logging import print_log

from ..utils.build import ConfigError, load_config, neck_channel_error
from ..utils.config_options import merge_cfg_options

if TYPE_CHECKING:
    from mmengine.runner import Runner

CONVERT_HINT = ('convert the ImageNet weights with tools/model_converters/convert_weights.py (the comment at the top '
                'of the config gives the exact command), or train from scratch with '
                '--cfg-options model.backbone.init_cfg=None')


class PretrainedWeightsMissing(FileNotFoundError):
    """An ``init_cfg`` of type ``Pretrained`` names a local file that does not exist."""


class ModelCheckError(ValueError):
    """The model of a config cannot work as configured (its parts do not fit together, or the checkpoint given for
    it is of another model)."""


def default_work_dir(config_path: str) -> str:
    """``./work_dirs/<config file name without .py>``, as mmdet's tools."""
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def load_run_config(config: str,
                    cfg_options: Optional[Mapping[str, Any]] = None,
                    launcher: str = 'none',
                    work_dir: Optional[str] = None) -> Config:
    """The config of a training / testing run: ``config`` loaded by :func:`shufflenet_det.utils.build.load_config`
    (:class:`~shufflenet_det.utils.build.ConfigError` naming the file when it is missing or broken), with the
    launcher set, ``--cfg-options`` merged (after the launcher, so they may override it; ConfigError naming a bad
    option: :mod:`shufflenet_det.utils.config_options`) and the work dir set (CLI > config >
    ``work_dirs/<config name>``)."""
    cfg = load_config(config)
    cfg.launcher = launcher
    merge_cfg_options(cfg, cfg_options, ConfigError)
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


def check_pretrained_files(cfg: Mapping[str, Any], partial_load: bool = False) -> None:
    """Check the local checkpoints named by ``Pretrained`` init_cfgs before mmengine loads them.

    A missing file raises :class:`PretrainedWeightsMissing`; a file that is unreadable or refused by the safe loader,
    or whose weights do not fit the model part whose ``init_cfg`` names it (mmengine loads such weights non-strictly:
    another model's checkpoint would leave a warning in the log and the part randomly initialised), raises
    :class:`ModelCheckError` naming the file and the keys - unless ``partial_load`` (the tools' ``--partial-load``),
    which logs the mismatch as a warning. Weights named ``shufflenet_det://...`` are fetched and converted here (once:
    :func:`shufflenet_det.weights.resolve`; its errors name the URL and the cache path to put the file at) and checked
    against the part they initialise (another width, groups or arch is an error naming both); their weights that the
    part does not build (``conv5`` of a backbone with ``with_conv5=False``) are listed and left out. Other URLs and
    ``scheme://`` names (``torchvision://``, ``open-mmlab://`` ...) are resolved by mmengine and skipped.
    """
    from ..weights import is_named, resolve
    model_cfg = cfg.get('model', {})
    for where, init_cfg in _iter_init_cfgs(model_cfg, 'model'):
        if init_cfg.get('type') != 'Pretrained':
            continue
        ckpt = init_cfg.get('checkpoint')
        if is_named(ckpt):  # the architecture first: nothing is downloaded for a config naming other weights
            name = str(ckpt)
            _check_named_arch(_build_part(model_cfg, where), name, init_cfg.get('prefix'))
            _check_pretrained_fit(model_cfg, where, str(resolve(name)), init_cfg.get('prefix'), partial_load,
                                  name=name)
            continue
        if not isinstance(ckpt, str) or '://' in ckpt:
            continue
        if not osp.isfile(ckpt):
            raise PretrainedWeightsMissing(
                f'pretrained checkpoint {ckpt!r} ({where}) does not exist (relative paths are resolved from '
                f'{os.getcwd()}); {CONVERT_HINT}')
        _check_pretrained_fit(model_cfg, where, ckpt, init_cfg.get('prefix'), partial_load)


def _check_pretrained_fit(model_cfg: Mapping[str, Any], where: str, ckpt: str, prefix: Optional[str],
                          partial_load: bool, name: Optional[str] = None) -> None:
    """Read ``ckpt`` safely and compare it (keys with ``prefix`` only, prefix removed: mmengine's ``PretrainedInit``)
    with the model part of ``model_cfg`` whose init_cfg is at ``where`` (see :func:`check_pretrained_files`);
    ``name``: the ``shufflenet_det://`` name ``ckpt`` was resolved from."""

    from ..utils.checkpoint import CheckpointError, check_state_dict_fits, extract_state_dict, read_checkpoint

    source = f'pretrained checkpoint {ckpt!r} ({where})' if name is None else \
        f'pretrained weights {name} (cached at {ckpt}) ({where})'
    try:
        state = extract_state_dict(read_checkpoint(ckpt, what='pretrained checkpoint'), source)
    except CheckpointError as exc:
        raise ModelCheckError(f'{exc} ({where})') from exc
    if prefix:
        if not any(k.startswith(prefix) for k in state):
            raise ModelCheckError(f'{source} has no weights under prefix={prefix!r} (keys such as '
                                  f'{sorted(state)[:3]}); set {where}.prefix to the prefix of the part to load')
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    module = _build_part(model_cfg, where)
    if module is None:
        return
    if name is not None:
        state = _named_weights_for(module, state, source)
    try:
        check_state_dict_fits(module, state, source)
    except CheckpointError as exc:
        if not partial_load:
            raise ModelCheckError(f'{exc} Point {where} at the weights of this model ({CONVERT_HINT}), or pass '
                                  '--partial-load to load only the weights that fit') from exc
        print_log(f'partial load (--partial-load): {exc}', logger='current', level=logging.WARNING)


def _build_part(model_cfg: Mapping[str, Any], where: str) -> Any:
    """The model part of ``model_cfg`` whose init_cfg is at ``where``, built (nothing loaded: init_cfg acts in
    ``init_weights()``); None where it cannot be (reported by the model checks that follow) or is a list item."""
    from ..utils.build import build_model
    part: Any = model_cfg
    for key in where.split('.')[1:-1]:  # between 'model' and 'init_cfg'; list items ('head[0]') are not checked
        part = part.get(key) if isinstance(part, Mapping) else None
    if not isinstance(part, Mapping) or 'type' not in part:
        return None
    try:
        return build_model(part)
    except (TypeError, KeyError, AssertionError, ValueError):
        return None


def _check_named_arch(module: Any, name: str, prefix: Optional[str]) -> None:
    """ModelCheckError naming both when the weights of ``name`` are for another architecture than ``module``
    (:func:`shufflenet_det.weights.check_backbone`); nothing to check where the part cannot be built."""
    from ..weights import check_backbone
    if module is None:
        return
    try:
        check_backbone(module, name, prefix)
    except ValueError as exc:
        raise ModelCheckError(str(exc)) from exc


def _named_weights_for(module: Any, state: dict, source: str) -> dict:
    """The weights of a named checkpoint (its architecture checked already) that ``module`` builds; the others,
    parts its config leaves out, are listed."""
    own = module.state_dict()
    unused = sorted(k for k in state if k not in own)
    if unused:
        print_log(f'{source}: {len(unused)} weights are not used by this {type(module).__name__} (parts its config '
                  f'leaves out): {", ".join(unused[:6])}{" ..." if len(unused) > 6 else ""}', logger='current',
                  level=logging.INFO)
    return {k: v for k, v in state.items() if k in own}


def check_resume_work_dir(work_dir: str, option: str = '--work-dir') -> str:
    """The checkpoint ``--resume`` continues from in ``work_dir`` (its ``last_checkpoint`` file); ValueError naming
    ``option`` when the folder holds none (a resume that would silently start from scratch)."""
    from mmengine.runner import find_latest_checkpoint
    latest = find_latest_checkpoint(work_dir) if osp.isdir(work_dir) else None
    if not latest:
        raise ValueError(f'--resume: {option} {work_dir!r} holds no checkpoint to continue (no last_checkpoint file '
                         'of an earlier run); give the work dir of the interrupted job, or run without --resume to '
                         'start a new one')
    return str(latest)


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


def _model_cfg_without_init(cfg: Mapping[str, Any]) -> dict:
    """A copy of ``cfg.model`` whose backbone loads nothing (the checks here must not read pretrained weights)."""
    model_cfg = copy.deepcopy(dict(cfg['model']))
    if isinstance(model_cfg.get('backbone'), Mapping):
        model_cfg['backbone'] = dict(model_cfg['backbone'], init_cfg=None)
    return model_cfg


def check_backbone_neck_channels(cfg: Mapping[str, Any]) -> None:
    """Build the config's backbone and compare its ``out_channels`` with the neck's ``in_channels``.

    A mismatch otherwise surfaces as a conv shape error in the first forward pass, after the Runner, the dataloaders
    and (for COCO) minutes of start-up. Backbones without ``out_channels`` (mmdet's ResNet ...) and models without a
    neck are not checked. Argument errors of the backbone (ValueError naming the argument) surface here as well.
    """
    from ..utils.build import build_model
    model_cfg = cfg.get('model')  # cfg: an mmengine Config (not a Mapping) or a dict
    if not isinstance(model_cfg, Mapping) or not isinstance(model_cfg.get('backbone'), Mapping):
        return
    backbone_cfg = dict(model_cfg['backbone'], init_cfg=None)
    try:
        backbone = build_model(backbone_cfg)
    except (TypeError, KeyError, AssertionError) as exc:  # unknown argument / type, mmcv's bare asserts
        raise ModelCheckError(f"model.backbone ({backbone_cfg.get('type')!r}) cannot be built: "
                              f'{type(exc).__name__}: {exc}') from exc
    error = neck_channel_error(backbone, model_cfg.get('neck'))
    if error:
        raise ModelCheckError(error)


def start_checkpoint(cfg: Mapping[str, Any]) -> tuple[Optional[str], str]:
    """The checkpoint the Runner will load before training / testing, and how it was named (for messages).

    ``resume=True`` without ``load_from`` means the latest checkpoint of the work dir (its ``last_checkpoint``
    file), as mmengine resolves it; None when there is nothing to load.
    """
    load_from = cfg.get('load_from')
    if cfg.get('resume'):
        if load_from:
            return str(load_from), 'resume checkpoint'
        from mmengine.runner import find_latest_checkpoint
        work_dir = cfg.get('work_dir')
        latest = find_latest_checkpoint(work_dir) if work_dir and osp.isdir(work_dir) else None
        return (str(latest), f'resume checkpoint (from {osp.join(str(work_dir), "last_checkpoint")})') if latest \
            else (None, '')
    return (str(load_from), 'load_from checkpoint') if load_from else (None, '')


def check_start_checkpoint(cfg: Mapping[str, Any], partial_load: bool = False) -> Optional[str]:
    """Check the checkpoint of :func:`start_checkpoint` against the config's model; return its path (or None).

    The file must exist and be a readable PyTorch checkpoint (read safely: ``weights_only=True``), and unless
    ``partial_load`` (never for a resume) every key and shape must fit the model: :class:`ModelCheckError` naming the
    file and the mismatch otherwise. With ``partial_load`` a mismatch is logged as a warning. A checkpoint named
    ``shufflenet_det://...`` is fetched and converted first (:func:`shufflenet_det.weights.resolve`) and its cached
    file checked; the Runner then loads it from the cache.
    """
    from ..utils.build import build_model
    from ..utils.checkpoint import CheckpointError, check_state_dict_fits, extract_state_dict, read_checkpoint
    from ..weights import is_named, resolve

    path, what = start_checkpoint(cfg)
    name = path if is_named(path) else None
    if name is not None and 'model' in cfg:
        path = str(resolve(name))  # errors name the URL and the cache path to put the file at
        what = f'{what} {name}, cached at'
    if path is None or '://' in path or 'model' not in cfg:
        return path
    if osp.isdir(osp.expanduser(path)):
        raise ModelCheckError(f'{what} {path!r} is a folder, not a checkpoint file')
    if not osp.isfile(osp.expanduser(path)):
        raise ModelCheckError(f'{what} {path!r} does not exist')
    source = f'{what} {path!r}'
    try:
        checkpoint = read_checkpoint(path, what=what)
        state = extract_state_dict(checkpoint, source)
        state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    except CheckpointError as exc:
        raise ModelCheckError(str(exc)) from exc
    model = build_model(_model_cfg_without_init(cfg))
    try:
        check_state_dict_fits(model, state, source)
    except CheckpointError as exc:
        if cfg.get('resume'):
            raise ModelCheckError(f'{exc} Resuming continues the run that wrote the checkpoint: use the config '
                                  'of that run, or start a new run from these weights with load_from') from exc
        if not partial_load:
            raise ModelCheckError(f'{exc} Use the config the checkpoint was trained with, or pass --partial-load '
                                  '(load_from: the matching weights are loaded, the rest keeps its initialisation)'
                                  ) from exc
        print_log(f'partial load (--partial-load): {exc}', logger='current', level=logging.WARNING)
    return path


def prepare_for(cfg: Config, phases: Sequence[str], check_pretrained: bool, check_model: bool = True,
                partial_load: bool = False) -> None:
    """The checks and settings both tools apply before building the Runner (see module docstring).

    ``check_model``: check the backbone against the neck and the start checkpoint against the model
    (:func:`check_backbone_neck_channels`, :func:`check_start_checkpoint` with ``partial_load``); ``partial_load``
    also lets ``Pretrained`` init weights fit partly (:func:`check_pretrained_files`).
    """
    from ..datasets import check_config_data
    check_config_data(cfg, phases)
    if check_pretrained:
        check_pretrained_files(cfg, partial_load=partial_load)
    if check_model:
        check_backbone_neck_channels(cfg)
        check_start_checkpoint(cfg, partial_load=partial_load)
    select_dist_backend(cfg)
