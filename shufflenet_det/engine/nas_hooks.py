"""Supernet training: one uniformly sampled path per iteration (Single Path One-Shot, Guo et al., arXiv 1904.00420;
DetNAS, Chen et al., arXiv 1903.10979).

:class:`UniformPathSamplerHook` activates, before every training iteration, a path drawn uniformly from the search
space of every supernet backbone of the model (:class:`~shufflenet_det.models.backbones.DetNASSupernet`), so the
normal ``tools/train.py`` trains a supernet::

    custom_hooks = [dict(type='UniformPathSamplerHook')]
    find_unused_parameters = True   # DDP: the inactive choices get no gradient in an iteration

The path of iteration ``i`` is drawn from a generator seeded with ``(seed, i)`` (``seed``: the hook's, else the
Runner's), so a resumed run continues the same sequence of paths. In distributed training rank 0's path is
broadcast to every rank (``mmengine.dist.broadcast``), so all replicas train the same path and DDP averages the
gradients of the same weights, whatever seeds the ranks were given.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, cast

import numpy as np
import torch
from mmdet.registry import HOOKS
from mmengine import dist
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..models.backbones.detnas_supernet import DetNASSupernet

if TYPE_CHECKING:
    from mmengine.runner import Runner


def find_supernets(model: torch.nn.Module) -> list[DetNASSupernet]:
    """The supernet backbones inside ``model`` (a model wrapper is looked through)."""
    if is_model_wrapper(model):
        model = cast(torch.nn.Module, model.module)  # the wrapped model (nn.Module.__getattr__ is typed loosely)
    return [m for m in model.modules() if isinstance(m, DetNASSupernet)]


def broadcast_path(path: tuple[int, ...], src: int = 0) -> tuple[int, ...]:
    """``path`` of rank ``src`` on every rank (unchanged when not distributed)."""
    if dist.get_world_size() <= 1:
        return path
    data = torch.tensor(path, dtype=torch.long)
    dist.broadcast(data, src=src)
    return tuple(int(c) for c in data.tolist())


@HOOKS.register_module()
class UniformPathSamplerHook(Hook):
    """Activate a uniformly sampled path of every supernet backbone before each training iteration.

    Args:
        seed: seed of the path sequence; ``None`` (default): the Runner's seed (``randomness.seed``). Iteration ``i``
            uses ``numpy.random.default_rng([seed, i])`` on rank 0, broadcast to the other ranks.
    """

    priority = 'VERY_HIGH'  # before any hook that might run the model

    def __init__(self, seed: Optional[int] = None) -> None:
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            raise ValueError(f'UniformPathSamplerHook: seed={seed!r} must be None or a non-negative int')
        self.seed = seed
        self.last_paths: list[tuple[int, ...]] = []

    def _seed(self, runner: Runner) -> int:
        if self.seed is not None:
            return self.seed
        seed = getattr(runner, 'seed', None)
        return int(seed) if seed is not None else 0

    def _supernets(self, runner: Runner) -> list[DetNASSupernet]:
        supernets = find_supernets(runner.model)
        if not supernets:
            raise RuntimeError('UniformPathSamplerHook: the model has no supernet backbone (type=\'DetNASSupernet\'); '
                               'remove the hook from custom_hooks or use a supernet backbone')
        return supernets

    def before_train(self, runner: Runner) -> None:
        self._supernets(runner)  # fail before the first iteration

    def sample(self, runner: Runner, iteration: int) -> list[tuple[int, ...]]:
        """Draw, synchronise and activate the paths of ``iteration``; return them (one per supernet)."""
        rng = np.random.default_rng([self._seed(runner), int(iteration)])
        paths = []
        for supernet in self._supernets(runner):
            path = broadcast_path(supernet.space.sample(rng))
            paths.append(supernet.set_path(path))
        self.last_paths = paths
        return paths

    def before_train_iter(self, runner: Runner, batch_idx: int, data_batch: Any = None) -> None:
        self.sample(runner, runner.iter)
