"""Dense heads, each registered in ``mmdet.registry.MODELS`` on import."""
from .lite_aux_head import LiteAuxHead
from .lite_gfl_head import LiteGFLHead
from .pico_head import PicoHead

__all__ = ['LiteAuxHead', 'LiteGFLHead', 'PicoHead']
