"""Deploy forms are looked up by head type (shufflenet_det.deploy.forms): along the head's MRO, with clear errors."""
from __future__ import annotations

from typing import Any

import mmdet  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import pytest
import torch
from mmdet.models.dense_heads import GFLHead, RetinaHead
from mmdet.models.dense_heads.base_dense_head import BaseDenseHead

import deploy_fixtures as fx
from shufflenet_det.deploy import forms
from shufflenet_det.deploy.detector import deploy_form, export_wrapper, head_output_scales, postprocess_meta
from shufflenet_det.deploy.heads import AnchorExportWrapper, AnchorForm, GFLForm
from shufflenet_det.models.dense_heads import LiteGFLHead


class SubRetinaHead(RetinaHead):
    """A user's RetinaHead: other training, mmdet's decoding."""


class OwnDecodingRetinaHead(RetinaHead):
    """A RetinaHead subclass with a decoding of its own."""

    def predict_by_feat(self, *args: Any, **kwargs: Any) -> Any:
        return super().predict_by_feat(*args, **kwargs)


class UnknownHead(BaseDenseHead):
    """A head type without a registered form."""


def _with_head_class(detector: torch.nn.Module, cls: type) -> torch.nn.Module:
    detector.bbox_head.__class__ = cls
    return detector


@pytest.fixture
def registry(monkeypatch) -> dict:
    """A copy of the registry for the test (registrations made in it do not outlive the test)."""
    copy = dict(forms.DEPLOY_FORMS)
    monkeypatch.setattr(forms, 'DEPLOY_FORMS', copy)
    return copy


def test_lookup_follows_the_head_mro() -> None:
    assert isinstance(forms.deploy_form_of(RetinaHead), AnchorForm)
    assert isinstance(forms.deploy_form_of(SubRetinaHead), AnchorForm)
    assert isinstance(forms.deploy_form_of(LiteGFLHead), GFLForm)
    # a subclass of RetinaHead in a detector: the anchor form's wrapper, meta and scales, as for RetinaHead itself
    detector = fx.spread_retinanet()
    x = fx.images(detector, (64, 96), 1)[0]
    expected = postprocess_meta(detector), head_output_scales(detector, x)
    sub = _with_head_class(fx.spread_retinanet(), SubRetinaHead)
    assert isinstance(deploy_form(sub), AnchorForm) and isinstance(export_wrapper(sub), AnchorExportWrapper)
    assert (postprocess_meta(sub), head_output_scales(sub, x)) == expected


def test_unregistered_head_type_is_named_with_the_registered_forms() -> None:
    with pytest.raises(ValueError, match=r'no deploy form for head type .*UnknownHead; registered: anchor '
                                         r'\(AnchorHead and subclasses\), gfl \(LiteGFLHead and subclasses\)'):
        forms.deploy_form_of(UnknownHead)
    detector = _with_head_class(fx.spread_retinanet(), UnknownHead)
    with pytest.raises(ValueError, match='UnknownHead'):
        export_wrapper(detector)
    with pytest.raises(ValueError, match='not an mmdet single-stage detector'):
        deploy_form(torch.nn.Conv2d(3, 3, 1))


def test_a_head_with_its_own_decoding_needs_its_own_form(registry) -> None:
    # mmdet's GFLHead is an AnchorHead whose _predict_by_feat_single decodes distributions, not deltas
    with pytest.raises(ValueError, match=r'GFLHead overrides _predict_by_feat_single of AnchorHead.*anchor'):
        forms.deploy_form_of(GFLHead)
    with pytest.raises(ValueError, match=r'OwnDecodingRetinaHead overrides predict_by_feat'):
        forms.deploy_form_of(OwnDecodingRetinaHead)

    # registering a form for the new head type plugs it into the export pieces
    @forms.register_deploy_form(OwnDecodingRetinaHead)
    class OwnForm(AnchorForm):
        name = 'own'
        in_graph_nms = False

    detector = _with_head_class(fx.spread_retinanet(), OwnDecodingRetinaHead)
    assert isinstance(deploy_form(detector), OwnForm)
    assert export_wrapper(detector, with_nms=False).output_names[0] == 'cls_score_0'
    with pytest.raises(ValueError, match="'own' deploy form of OwnDecodingRetinaHead has no NMS graph"):
        export_wrapper(detector)
    assert 'own (OwnDecodingRetinaHead and subclasses)' in forms.registered_forms()
    # another form for a registered type only with force=True
    with pytest.raises(ValueError, match='OwnDecodingRetinaHead already has the deploy form OwnForm'):
        forms.register_deploy_form(OwnDecodingRetinaHead)(AnchorForm)
    forms.register_deploy_form(OwnDecodingRetinaHead, force=True)(AnchorForm)
    assert isinstance(forms.deploy_form_of(OwnDecodingRetinaHead), AnchorForm)
