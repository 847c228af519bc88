"""Architecture tables (as data) and their validating parsers."""
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
           'SearchedArch', 'parse_detnas_arch', 'parse_oneshot_arch', 'parse_v2plus_arch']
