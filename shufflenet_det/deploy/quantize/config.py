"""What a quantization is asked to do (:class:`QuantConfig`) and how it fails (:class:`QuantizationError`,
:class:`AccuracyGateError`)."""
from __future__ import annotations

import dataclasses
from typing import Any

from ..export_common import ExportError

#: Calibration methods of ONNX Runtime offered here (``CalibrationMethod`` names in lower case).
CALIBRATION_METHODS = ('minmax', 'entropy', 'percentile')
#: Activation types: ``uint8`` (asymmetric; ONNX Runtime's u8s8 kernels on x86) or ``int8``.
ACTIVATION_TYPES = ('uint8', 'int8')


class QuantizationError(ExportError):
    """Quantization failed (nothing is written)."""


class AccuracyGateError(QuantizationError):
    """The int8 model loses more accuracy than allowed (nothing is written); ``report`` holds the measurements."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


def quantizable_op_types() -> set[str]:
    """Operator types ONNX Runtime's ``quantize_static`` can quantize (its QDQ and QOperator registries: what it
    quantizes when no ``op_types_to_quantize`` is given)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
    return set(QDQRegistry) | set(QLinearOpsRegistry)


@dataclasses.dataclass
class QuantConfig:
    """How a model is quantized.

    ``exclude`` names nodes kept in float; ``exclude_final_convs`` keeps every convolution with no convolution after
    it (the heads' last layers) in float; ``exclude_sensitive`` keeps the K convolutions that add the most error
    (:func:`.measure.sensitivity_report`) in float; the post-processing after the last convolutions
    (:func:`.graph.postprocess_nodes`) stays in float unless ``quantize_postprocess``. ``op_types`` restricts the
    quantized operator types (None: every type ONNX Runtime can quantize).
    """

    method: str = 'minmax'
    activation_type: str = 'uint8'
    per_channel: bool = True
    reduce_range: bool = False
    percentile: float = 99.999
    quantize_postprocess: bool = False
    exclude: tuple[str, ...] = ()
    exclude_final_convs: bool = False
    exclude_sensitive: int = 0
    op_types: tuple[str, ...] | None = None

    def validate(self) -> QuantConfig:
        """ValueError naming the first bad field and what is allowed; returns self."""
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(f'calibration method must be one of {CALIBRATION_METHODS}, got {self.method!r}')
        if self.activation_type not in ACTIVATION_TYPES:
            raise ValueError(f'activation type must be one of {ACTIVATION_TYPES}, got {self.activation_type!r}')
        if not 0.0 < float(self.percentile) <= 100.0:
            raise ValueError(f'percentile must be in (0, 100], got {self.percentile}')
        if int(self.exclude_sensitive) < 0:
            raise ValueError(f'exclude_sensitive must be >= 0, got {self.exclude_sensitive}')
        if self.op_types is not None and not self.op_types:
            raise ValueError('op_types must name at least one operator type (or be None for all)')
        if self.op_types:
            known = quantizable_op_types()
            unknown = [t for t in self.op_types if t not in known]
            if unknown:
                raise ValueError(f'operator types to quantize (--op-types) {unknown} are not types ONNX Runtime '
                                 f'quantizes; allowed: {sorted(known)}')
        return self

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        d = dataclasses.asdict(self)
        d['exclude'] = list(self.exclude)
        d['op_types'] = list(self.op_types) if self.op_types is not None else None
        return d
