"""Detectors, each registered in ``mmdet.registry.MODELS`` on import."""
from .lite_detector import LiteDetector

__all__ = ['LiteDetector']
