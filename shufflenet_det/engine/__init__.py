"""Training-engine pieces registered in mmdet's registries: crash-safe checkpointing."""
from .atomic_io import ATOMIC_BACKEND, AtomicLocalBackend, write_atomic
from .checkpoint_hook import AtomicCheckpointHook

__all__ = ['ATOMIC_BACKEND', 'AtomicLocalBackend', 'AtomicCheckpointHook', 'write_atomic']
