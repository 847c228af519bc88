"""Backbones, each registered in ``mmdet.registry.MODELS`` on import."""
from .base import ShuffleBackboneBase

__all__ = ['ShuffleBackboneBase']
