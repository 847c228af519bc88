"""Deploy forms of detection heads: what an export needs of a head, looked up by the head's type.

A *deploy form* (:class:`HeadDeployForm`) describes how a detector whose ``bbox_head`` is of one type is exported:

* :meth:`~HeadDeployForm.wrapper` - the export module (:class:`ExportWrapper`): normalised images ``(B, 3, H, W)``
  to the flattened raw head outputs (``with_nms=False``: decoding and NMS outside the graph, e.g. ncnn) or, where
  the form supports it (:attr:`~HeadDeployForm.in_graph_nms`), to ``num_dets, boxes, scores, labels`` with the
  decoding and ONNX ``NonMaxSuppression`` in the graph;
* :meth:`~HeadDeployForm.postprocess_meta` - the post-processing description written in every export report (the
  ``postprocess`` entry, without its ``preprocess`` part) that ``runtime.postprocess.decode_outputs`` reads;
* :meth:`~HeadDeployForm.split_raw` - which raw outputs are class scores and which box regressions: their
  magnitudes are the scales of the parity tolerances (:func:`.detector.head_output_scales`);
* :meth:`~HeadDeployForm.check` - ValueError for head settings the form cannot export.

Forms are registered for head classes (:func:`register_deploy_form`) and found along the head's MRO
(:func:`deploy_form_of`): the anchor form is registered for mmdet's ``AnchorHead``, so ``RetinaHead`` and any subclass
get it; the GFL form for the project's ``LiteGFLHead``. A form reproduces some methods of the class it is registered
for (:attr:`~HeadDeployForm.reproduces`, e.g. ``predict_by_feat``); a subclass that overrides one of them decodes
differently and gets no form until one is registered for it. The built-in forms live in :mod:`.heads`
(:mod:`.detector` imports them); a new head registers its own form the same way, e.g.::

    @register_deploy_form(PicoHead)
    class PicoForm(HeadDeployForm):
        name = 'pico'
        ...

This module holds the registry and the base classes only (torch, no mmdet): it imports no form.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, Sequence, TypeVar

import torch
from torch import Tensor, nn

#: The outputs of every export with NMS in the graph (TensorRT's EfficientNMS layout).
DETECTION_OUTPUTS = ('num_dets', 'boxes', 'scores', 'labels')


def head_of(detector: nn.Module) -> Any:
    """The ``bbox_head`` of an mmdet single-stage detector; ValueError for anything else.

    Typed ``Any``: heads are mmdet modules whose attributes (``test_cfg``, ``prior_generator``, ...) the forms read.
    """
    head = getattr(detector, 'bbox_head', None)
    if head is None or not hasattr(detector, 'extract_feat'):
        raise ValueError(f'{type(detector).__name__} is not an mmdet single-stage detector (needs extract_feat and '
                         'bbox_head)')
    return head


class ExportWrapper(nn.Module):
    """Normalised images ``(B, 3, H, W)`` -> raw head outputs, or ``num_dets, boxes, scores, labels``.

    The detector is used as it is (call ``switch_to_deploy`` on it beforehand). Subclasses give the raw outputs'
    names and layout (:meth:`raw_outputs`) and, for forms with NMS in the graph, the detections (:meth:`detections`).
    """

    detector: Any  # an mmdet single-stage detector (registered as a submodule)

    def __init__(self, detector: nn.Module, with_nms: bool = True) -> None:
        super().__init__()
        self.detector = detector
        self.with_nms = bool(with_nms)

    def set_test_cfg(self, test_cfg: dict[str, Any]) -> None:
        """The head's test settings that the in-graph NMS applies (the ``test_cfg`` of a form's
        ``postprocess_meta``)."""
        self.nms_pre: int = test_cfg['nms_pre']
        self.score_thr: float = test_cfg['score_thr']
        self.iou_thr: float = test_cfg['iou_threshold']
        self.max_per_img: int = test_cfg['max_per_img']
        self.min_bbox_size: float = test_cfg['min_bbox_size']

    @property
    @abstractmethod
    def raw_output_names(self) -> list[str]:
        """Names of the raw outputs (``with_nms=False``), in order."""

    @property
    def output_names(self) -> list[str]:
        """Names of the graph outputs, in order."""
        return list(DETECTION_OUTPUTS) if self.with_nms else self.raw_output_names

    @abstractmethod
    def raw_outputs(self, head_outputs: Sequence[Any]) -> tuple[Tensor, ...]:
        """The flattened raw outputs from what the head's ``forward`` returned."""

    def detections(self, head_outputs: Sequence[Any], img_hw: Tensor) -> tuple[Tensor, ...]:
        """``num_dets, boxes, scores, labels`` from the head's outputs; ``img_hw`` is the input's (H, W) as a tensor
        (so that a dynamic graph follows the input size)."""
        raise NotImplementedError(f'{type(self).__name__} has no NMS graph')

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """Normalised images -> :attr:`output_names`' tensors."""
        outs = self.detector.bbox_head(self.detector.extract_feat(x))
        if not self.with_nms:
            return self.raw_outputs(outs)
        return self.detections(outs, torch._shape_as_tensor(x)[2:])


class HeadDeployForm(ABC):
    """How detectors with one type of head are exported (see the module docstring). Stateless: one instance per
    registered form class."""

    #: Short name, in messages.
    name: ClassVar[str] = ''
    #: Methods of the registered head class whose results the form reproduces; a subclass overriding one of them
    #: needs a form of its own.
    reproduces: ClassVar[tuple[str, ...]] = ('predict_by_feat',)
    #: Whether :meth:`wrapper` can put the decoding and NMS in the graph (``with_nms=True``).
    in_graph_nms: ClassVar[bool] = True
    #: Whether mmdeploy's export of this head (its rewriter) gives mmdet's own detections, so that
    #: ``tools/deploy/mmdeploy_deploy.py`` requires that parity (informational otherwise).
    mmdeploy_matches_mmdet: ClassVar[bool] = False
    #: Whether mmdeploy's ncnn backend can export this head: its end2end models end in ncnn's ``DetectionOutput``
    #: layer, which decodes anchor boxes (``tools/deploy/mmdeploy_deploy.py`` refuses the others before any work).
    mmdeploy_ncnn: ClassVar[bool] = True

    @abstractmethod
    def check(self, head: Any) -> None:
        """ValueError when the head's settings (coder, ``test_cfg``, ...) cannot be exported in this form."""

    def wrapper(self, detector: nn.Module, with_nms: bool = True) -> ExportWrapper:
        """The export module of ``detector`` (checked first); ValueError for ``with_nms`` without an NMS graph."""
        head = head_of(detector)
        self.check(head)
        if with_nms and not self.in_graph_nms:
            raise ValueError(f'the {self.name!r} deploy form of {type(head).__name__} has no NMS graph: export it '
                             'without NMS (--no-nms) and decode outside the graph')
        return self.make_wrapper(detector, with_nms)

    @abstractmethod
    def make_wrapper(self, detector: nn.Module, with_nms: bool) -> ExportWrapper:
        """The export module of a checked detector."""

    @abstractmethod
    def postprocess_meta(self, head: Any) -> dict[str, Any]:
        """What ``runtime.postprocess.decode_outputs`` needs to decode the raw outputs (JSON-serialisable; the
        ``preprocess`` part is added by :func:`.detector.postprocess_meta`)."""

    @abstractmethod
    def split_raw(self, head: Any, raw: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """``(class outputs, box outputs)`` of one image's raw outputs (the wrapper's ``with_nms=False`` order)."""


class FlatOutputExportWrapper(ExportWrapper):
    """Heads whose raw export is one tensor, ``output``: the head's ``flatten_outputs`` of its per-level maps
    (``(B, points, C + 4 (reg_max + 1))``, the GFL layout). ``form`` checks the head and gives its test settings."""

    form: ClassVar[type[HeadDeployForm]]

    def __init__(self, detector: nn.Module, with_nms: bool = True) -> None:
        super().__init__(detector, with_nms)
        self.test_cfg: dict[str, Any] = self.form().postprocess_meta(head_of(detector))['test_cfg']  # checks the head
        self.set_test_cfg(self.test_cfg)

    @property
    def raw_output_names(self) -> list[str]:
        """One tensor, ``output``."""
        return ['output']

    def raw_outputs(self, head_outputs: Sequence[Any]) -> tuple[Tensor, ...]:
        """``(output,)``: the head's ``flatten_outputs`` of its per-level maps."""
        (maps,) = head_outputs
        return (self.detector.bbox_head.flatten_outputs(maps),)


#: Head class -> its deploy form (:func:`register_deploy_form`); read with :func:`deploy_form_of`.
DEPLOY_FORMS: dict[type, HeadDeployForm] = {}

FormT = TypeVar('FormT', bound=type[HeadDeployForm])


def register_deploy_form(*head_types: type, force: bool = False) -> Callable[[FormT], FormT]:
    """Class decorator: register (an instance of) the decorated form for ``head_types`` and their subclasses.

    ValueError when a type already has another form, unless ``force``.
    """
    if not head_types or not all(isinstance(t, type) for t in head_types):
        raise ValueError(f'register_deploy_form needs head classes, got {head_types!r}')

    def register(form_cls: FormT) -> FormT:
        form = form_cls()
        for head_type in head_types:
            old = DEPLOY_FORMS.get(head_type)
            if old is not None and type(old) is not form_cls and not force:
                raise ValueError(f'{head_type.__name__} already has the deploy form {type(old).__name__} '
                                 f'({old.name!r}); pass force=True to replace it')
            DEPLOY_FORMS[head_type] = form
        return form_cls
    return register


def registered_forms() -> str:
    """The registered forms in words, e.g. ``'anchor (AnchorHead and subclasses), gfl (LiteGFLHead and ...)'``."""
    if not DEPLOY_FORMS:
        return 'none'
    return ', '.join(f'{form.name} ({head_type.__name__} and subclasses)' for head_type, form in DEPLOY_FORMS.items())


def _definition(cls: type, name: str) -> Any:
    """The object that defines attribute ``name`` for ``cls`` (from the class dicts along its MRO, unbound)."""
    return next((k.__dict__[name] for k in cls.__mro__ if name in k.__dict__), None)


def deploy_form_of(head: Any) -> HeadDeployForm:
    """The deploy form of a head (instance or class): the form of the first registered class of its MRO.

    ValueError naming the head's type and the registered forms when none applies: no class of its MRO is
    registered, or the head overrides a method that the form of its registered ancestor reproduces.
    """
    cls = head if isinstance(head, type) else type(head)
    for klass in cls.__mro__:
        form = DEPLOY_FORMS.get(klass)
        if form is None:
            continue
        changed = [m for m in form.reproduces if _definition(cls, m) is not _definition(klass, m)]
        if changed:
            raise ValueError(f'{cls.__module__}.{cls.__qualname__} overrides {", ".join(changed)} of '
                             f'{klass.__name__}, whose {form.name!r} deploy form reproduces it: it needs a deploy '
                             'form of its own (shufflenet_det.deploy.forms.register_deploy_form); registered: '
                             f'{registered_forms()}')
        return form
    raise ValueError(f'no deploy form for head type {cls.__module__}.{cls.__qualname__}; registered: '
                     f'{registered_forms()} (add one with shufflenet_det.deploy.forms.register_deploy_form)')
