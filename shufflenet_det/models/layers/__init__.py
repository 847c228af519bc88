from .conv_bn import conv_norm_act
from .fuse import count_batchnorm, fold_bn_into_conv, fuse_conv_bn
from .shuffle import channel_shuffle, channel_split

__all__ = ['conv_norm_act', 'count_batchnorm', 'fold_bn_into_conv', 'fuse_conv_bn', 'channel_shuffle',
           'channel_split']
