"""Model analysis: multiply-adds and parameters (mmengine's counter) and the published variants they are checked
against."""
from . import (
                         published_large,  # noqa: F401  (ShuffleNetV2.Large / ExLarge variants and their head)
                         published_searched,  # noqa: F401  (DetNAS / ShuffleNetV2+ / OneShot variants and V2+ head)
)
from .complexity import (
                         CLASSIFIER_HEADS,
                         MAC_OPS,
                         OP_SETS,
                         ImageClassifier,
                         classifier_complexity,
                         last_output_backbone,
                         model_complexity,
                         register_classifier_head,
)
from .published import PUBLISHED_VARIANTS, PublishedVariant, published_variants, register_published_variant

__all__ = ['MAC_OPS', 'OP_SETS', 'ImageClassifier', 'classifier_complexity', 'last_output_backbone', 'model_complexity',
           'PUBLISHED_VARIANTS', 'PublishedVariant', 'published_variants', 'register_published_variant',
           'CLASSIFIER_HEADS', 'register_classifier_head']
