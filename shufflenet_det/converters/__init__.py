"""Checkpoint converters (torchvision, Megvii ShuffleNet-Series, mmpretrain; NanoDet-Plus and PaddleDetection PicoDet
detectors) into this project's layouts.

Input files are read by :func:`shufflenet_det.utils.checkpoint.read_state_dict` and outputs written by
:func:`shufflenet_det.utils.io.save_torch_atomic`; see :mod:`.core`.
"""
from . import (  # noqa: F401  (register the V1/V2 converters)
                   megvii_large,  # noqa: F401  (register the ShuffleNetV2.Large / ExLarge converter)
                   megvii_searched,  # noqa: F401  (register the DetNAS / ShuffleNetV2+ / OneShot converters)
                   megvii_v1v2,
                   mmpretrain,
                   nanodet,  # noqa: F401  (register the NanoDet-Plus whole-detector converter)
                   paddle,  # noqa: F401  (register the PaddleDetection PicoDet whole-detector converter)
                   torchvision,
)
from .core import (
                   ConversionError,
                   available_converters,
                   available_detector_converters,
                   convert_checkpoint,
                   convert_detector_checkpoint,
                   get_converter,
                   get_detector_converter,
                   register_converter,
                   register_detector_converter,
                   target_backbone,
)

__all__ = ['ConversionError', 'available_converters', 'available_detector_converters', 'convert_checkpoint',
           'convert_detector_checkpoint', 'get_converter', 'get_detector_converter', 'register_converter',
           'register_detector_converter', 'target_backbone']
