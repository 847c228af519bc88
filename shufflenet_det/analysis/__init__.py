"""Model analysis: multiply-adds and parameters (mmengine's counter) and the published variants they are checked
against."""
from .complexity import (CLASSIFIER_HEADS, MAC_OPS, OP_SETS, ImageClassifier, build_backbone, classifier_complexity,
                         model_complexity, register_classifier_head)
from .published import PUBLISHED_VARIANTS, PublishedVariant, published_variants, register_published_variant
from . import published_searched  # noqa: F401,E402  (DetNAS / ShuffleNetV2+ / OneShot variants and V2+ head)

__all__ = ['MAC_OPS', 'OP_SETS', 'ImageClassifier', 'build_backbone', 'classifier_complexity', 'model_complexity',
           'PUBLISHED_VARIANTS', 'PublishedVariant', 'published_variants', 'register_published_variant',
           'CLASSIFIER_HEADS', 'register_classifier_head']
