"""Published ShuffleNet-family variants and their reference complexity, as data.

Each :class:`PublishedVariant` is one ImageNet classifier that an upstream project published: the backbone config
that rebuilds it here, and the reference multiply-adds and parameters of the classifier (224x224 input, global
average pool + 1000-way linear classifier). ``tests/analysis/test_flops.py`` and ``tools/analysis_tools/get_flops.py
--table`` iterate over :data:`PUBLISHED_VARIANTS`, so adding a family means appending its entries here (or calling
:func:`register_published_variant` from the family's own module): the tests then cover it automatically.

Reference sources:

* ShuffleNet V1: the official Megvii models (megvii-model/ShuffleNet-Series), conv + linear multiply-adds counted on
  the official implementation; classifier without bias, as in the official code. This project's ``ShuffleNetV1``
  mirrors the official structure.
* ShuffleNet V2 comes in two layouts of the same paper architecture (``ShuffleNetV2(layout=...)``), which differ in
  stage 2's first unit: torchvision's splits its output into two halves (58 + 58 at 1.0x), the official Megvii one
  gives the projection branch only the 24 stem channels and the main branch the rest (24 + 92). They coincide at 0.5x
  and differ by 0.6 % (1.0x) to 1.3 % (2.0x) in multiply-adds elsewhere. Each layout is checked against the
  implementation it reproduces:

  - ``layout='torchvision'`` (``'ShuffleNetV2 1.0x'``): torchvision's published numbers (weights
    ``ShuffleNet_V2_X*_Weights.IMAGENET1K_V1`` meta: ``_ops`` in GFLOPs and ``num_params``, classifier with bias);
    torchvision rounds 0.5x to 0.04 GFLOPs, so there the (identical) Megvii multiply-add count is used;
  - ``layout='megvii'`` (``'ShuffleNetV2 1.0x megvii'``): multiply-adds and params counted on the official
    ShuffleNet-Series implementation (reference file, "Multiply-adds ... counted"; classifier without bias, as in
    the official code); the official README's rounded figures (41M/1.4M, 146M/2.3M, 299M/3.5M, 591M/7.4M) are kept
    in ``extra`` for display.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional


@dataclass(frozen=True)
class PublishedVariant:
    """One published classifier: backbone config and reference complexity at ``input_size`` with the classifier.

    Attributes:
        name: display name, unique, e.g. ``'ShuffleNetV1 g3 1.0x'``.
        backbone: backbone config dict (``type`` + kwargs); ``out_indices`` is set by the counting code.
        flops: reference multiply-adds (conv + linear), absolute count.
        params: reference parameter count, absolute.
        classifier_bias: whether the published classifier's linear layer has a bias.
        source: where the reference numbers come from.
        input_size: square input side the reference was counted at.
        num_classes: classifier outputs.
        rel_tol: relative tolerance of the reference (1 % unless the source rounds coarser).
        extra: any further reference numbers (e.g. another implementation's counts), for display.
    """

    name: str
    backbone: dict
    flops: float
    params: float
    classifier_bias: bool = True
    source: str = ''
    input_size: int = 224
    num_classes: int = 1000
    rel_tol: float = 0.01
    extra: dict = field(default_factory=dict)

    @property
    def family(self) -> str:
        """The backbone type, e.g. ``'ShuffleNetV2'``."""
        return str(self.backbone['type'])


PUBLISHED_VARIANTS: list[PublishedVariant] = []


def register_published_variant(variant: PublishedVariant) -> PublishedVariant:
    """Append ``variant`` to :data:`PUBLISHED_VARIANTS` (names must be unique)."""
    if not isinstance(variant, PublishedVariant):
        raise ValueError(f'variant must be a PublishedVariant, got {type(variant).__name__}')
    if any(v.name == variant.name for v in PUBLISHED_VARIANTS):
        raise ValueError(f'a published variant named {variant.name!r} is already registered')
    if 'type' not in variant.backbone:
        raise ValueError(f'variant {variant.name!r}: backbone config needs a "type" key')
    PUBLISHED_VARIANTS.append(variant)
    return variant


def published_variants(families: Optional[Iterable[str]] = None) -> list[PublishedVariant]:
    """The registered variants, optionally only those whose backbone type is in ``families``."""
    if families is None:
        return list(PUBLISHED_VARIANTS)
    wanted = set(families)
    known = sorted({v.family for v in PUBLISHED_VARIANTS})
    unknown = wanted.difference(known)
    if unknown:
        raise ValueError(f'families={sorted(unknown)} have no published variant; known families: {known}')
    return [v for v in PUBLISHED_VARIANTS if v.family in wanted]


# ------------------------------------------------------------------ ShuffleNet V1 (Megvii official, g3 and g8)
_V1_MEGVII = {
    # (groups, width): (multiply-adds, params), official implementation, classifier without bias
    (3, 0.5): (37.6e6, 0.72e6), (3, 1.0): (137.5e6, 1.86e6), (3, 1.5): (292.4e6, 3.44e6), (3, 2.0): (524.0e6, 5.45e6),
    (8, 0.5): (40.5e6, 1.01e6), (8, 1.0): (138.4e6, 2.43e6), (8, 1.5): (290.2e6, 4.27e6), (8, 2.0): (521.9e6, 6.52e6),
}
for (_g, _w), (_flops, _params) in _V1_MEGVII.items():
    register_published_variant(PublishedVariant(
        name=f'ShuffleNetV1 g{_g} {_w:.1f}x',
        backbone=dict(type='ShuffleNetV1', groups=_g, widen_factor=_w),
        flops=_flops, params=_params, classifier_bias=False,
        source='megvii-model/ShuffleNet-Series ShuffleNetV1, conv+linear multiply-adds counted'))

# ------------------------------------------------------------------ ShuffleNet V2, torchvision layout
_V2_TORCHVISION = {
    # width: (torchvision meta _ops in GFLOPs, num_params), classifier with bias
    0.5: (0.04e9, 1366792), 1.0: (0.145e9, 2278604), 1.5: (0.296e9, 3503624), 2.0: (0.583e9, 7393996),
}
# width: (multiply-adds, params) counted on the official implementation, classifier without bias
_V2_MEGVII = {0.5: (40.5e6, 1.37e6), 1.0: (145.8e6, 2.28e6), 1.5: (299.0e6, 3.51e6), 2.0: (590.8e6, 7.40e6)}
# width: (FLOPs, params) as printed in the official ShuffleNetV2 README (rounded), for display
_V2_MEGVII_README = {0.5: (41e6, 1.4e6), 1.0: (146e6, 2.3e6), 1.5: (299e6, 3.5e6), 2.0: (591e6, 7.4e6)}
for _w, (_flops, _params) in _V2_TORCHVISION.items():
    _source = 'torchvision ShuffleNet_V2_X*_Weights meta (_ops, num_params)'
    if _w == 0.5:
        # torchvision rounds 0.5x to 0.04 GFLOPs; at 0.5x both layouts coincide (stage-2 input 24 = 48 / 2), so the
        # finer Megvii count is the multiply-add reference.
        _flops = _V2_MEGVII[_w][0]
        _source = ('multiply-adds: megvii-model/ShuffleNet-Series ShuffleNetV2 counted (same architecture at 0.5x); '
                   'params: torchvision meta num_params')
    register_published_variant(PublishedVariant(
        name=f'ShuffleNetV2 {_w:.1f}x',
        backbone=dict(type='ShuffleNetV2', widen_factor=_w, layout='torchvision'),
        flops=_flops, params=_params, classifier_bias=True, source=_source))

# ------------------------------------------------------------------ ShuffleNet V2, official Megvii layout
for _w, (_flops, _params) in _V2_MEGVII.items():
    register_published_variant(PublishedVariant(
        name=f'ShuffleNetV2 {_w:.1f}x megvii',
        backbone=dict(type='ShuffleNetV2', widen_factor=_w, layout='megvii'),
        flops=_flops, params=_params, classifier_bias=False,
        source='megvii-model/ShuffleNet-Series ShuffleNetV2, conv+linear multiply-adds counted',
        extra=dict(readme_flops=_V2_MEGVII_README[_w][0], readme_params=_V2_MEGVII_README[_w][1])))

del _g, _w, _flops, _params, _source
