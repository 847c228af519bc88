"""Necks, each registered in ``mmdet.registry.MODELS`` on import."""
from .ghost_pan import GhostPAN

__all__ = ['GhostPAN']
