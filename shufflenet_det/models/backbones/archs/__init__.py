"""Architecture tables (as data) and their validating parsers."""
from .esnet import ESNET_ARCHS, ESNetArch, make_divisible, parse_esnet_arch
from .large import LARGE_LAYOUTS, SHUFFLENET_V2_LARGE_ARCHS, LargeArch, parse_large_arch
from .searched import (
    DETNAS_ARCHS,
    ONESHOT_ARCH,
    ONESHOT_ARCHS,
    ONESHOT_SCALE_LIST,
    SHUFFLENET_V2_PLUS_ARCHS,
    SearchedArch,
    parse_detnas_arch,
    parse_oneshot_arch,
    parse_v2plus_arch,
)

__all__ = ['DETNAS_ARCHS', 'ONESHOT_ARCH', 'ONESHOT_ARCHS', 'ONESHOT_SCALE_LIST', 'SHUFFLENET_V2_PLUS_ARCHS',
           'SearchedArch', 'parse_detnas_arch', 'parse_oneshot_arch', 'parse_v2plus_arch',
           'LARGE_LAYOUTS', 'SHUFFLENET_V2_LARGE_ARCHS', 'LargeArch', 'parse_large_arch',
           'ESNET_ARCHS', 'ESNetArch', 'make_divisible', 'parse_esnet_arch']
