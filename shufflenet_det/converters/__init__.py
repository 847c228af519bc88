"""Checkpoint converters (torchvision, Megvii ShuffleNet-Series, mmpretrain) into this project's layouts."""
from .core import (ConversionError, available_converters, convert_checkpoint, get_converter,
                   load_state_dict_file, register_converter, save_atomic)
from . import megvii_v1v2, mmpretrain, torchvision  # noqa: F401,E402  (register the V1/V2 converters)
from . import megvii_searched  # noqa: F401,E402  (register the DetNAS / ShuffleNetV2+ / OneShot converters)

__all__ = ['ConversionError', 'available_converters', 'convert_checkpoint', 'get_converter',
           'load_state_dict_file', 'register_converter', 'save_atomic']
