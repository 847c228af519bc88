"""Dense heads, each registered in ``mmdet.registry.MODELS`` on import."""
from .lite_aux_head import LiteAuxHead
from .lite_gfl_head import LiteGFLHead

__all__ = ['LiteAuxHead', 'LiteGFLHead']
