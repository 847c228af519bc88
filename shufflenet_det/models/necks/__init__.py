"""Necks, each registered in ``mmdet.registry.MODELS`` on import."""
from .csp_pan import CSPPAN
from .ghost_pan import GhostPAN

__all__ = ['CSPPAN', 'GhostPAN']
