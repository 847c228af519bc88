from .conv_bn import conv_norm_act
from .fuse import count_batchnorm, fold_batchnorm
from .shuffle import channel_shuffle, channel_split

__all__ = ['conv_norm_act', 'count_batchnorm', 'fold_batchnorm', 'channel_shuffle', 'channel_split']
