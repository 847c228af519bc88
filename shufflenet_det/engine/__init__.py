"""Training-engine pieces registered in mmengine's / mmdet's registries: crash-safe checkpointing.

* :class:`AtomicLocalBackend` - mmengine file backend ``'atomic_local'`` (:data:`ATOMIC_BACKEND`) with atomic writes;
* :class:`AtomicCheckpointHook` - ``CheckpointHook`` in mmdet's ``HOOKS`` that saves through it;
* :class:`UniformPathSamplerHook` - supernet training: a uniform random path per iteration (DetNAS / SPOS).

What the tools do around a Runner (config checks, the mini job) lives in :mod:`shufflenet_det.apps`.
"""
from .atomic_io import ATOMIC_BACKEND, AtomicLocalBackend
from .checkpoint_hook import AtomicCheckpointHook
from .nas_hooks import UniformPathSamplerHook

__all__ = ['ATOMIC_BACKEND', 'AtomicLocalBackend', 'AtomicCheckpointHook', 'UniformPathSamplerHook']
