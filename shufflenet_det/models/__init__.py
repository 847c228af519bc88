"""Models registered in ``mmdet.registry.MODELS``: backbones, the lite detectors' neck, heads and detector, and their
building blocks (``layers``)."""
from . import backbones, dense_heads, detectors, necks  # noqa: F401
