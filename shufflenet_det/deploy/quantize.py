"""Static int8 post-training quantization of exported ONNX models (ONNX Runtime, QDQ), with its accuracy cost measured.

Affine 8-bit quantization with int32 accumulation (Jacob et al., "Quantization and Training of Neural Networks for
Efficient Integer-Arithmetic-Only Inference", CVPR 2018), per-channel symmetric weights and calibrated activation
ranges (Krishnamoorthi, "Quantizing deep convolutional networks for efficient inference: A whitepaper", 2018; Wu et
al., "Integer Quantization for Deep Learning Inference: Principles and Empirical Evaluation", 2020: MinMax, entropy
and percentile calibration, and partial quantization - the most sensitive layers kept in float).

:func:`quantize_onnx` takes any ONNX model of :mod:`.onnx_export` (a backbone, a detector with NMS in the graph, or
one that ends at the raw head tensors) and

1. runs ONNX Runtime's ``quant_pre_process`` (shape inference, basic graph optimisation);
2. calibrates on images prepared exactly as for the export (:func:`calibration_tensors`) and writes a QDQ model:
   int8 per-channel weights, uint8 activations by default, the chosen calibration method, the post-processing after
   the last convolutions in float, and the layers that must stay in float left out (named nodes, the final
   convolutions) with their outputs kept in float (:func:`keep_outputs_float`), so that ONNX Runtime cannot
   quantize them again at load time;
3. measures the error each convolution adds (:func:`sensitivity_report`: the int8 model's dequantized input and
   output of every convolution against the float model's, on calibration images) and, when asked, requantizes with
   the most sensitive ones kept in float (the calibration is computed once and reused);
4. scores the float and the int8 model on the validation set - COCO bbox mAP through
   :func:`.evaluate.evaluate_onnx` for detectors, the relative error of every output otherwise - and times both in
   the same rounds;
5. refuses (:class:`AccuracyGateError`, nothing written) when the mAP drop exceeds ``max_map_drop`` or an output
   error exceeds ``max_output_error``; otherwise writes the int8 model and its report ``<model>.onnx.json``
   atomically. Every intermediate file (pre-processed model, augmented calibration models, calibration cache) lives
   in a private temporary folder that is removed in every case.

Detectors without NMS in the graph are decoded by a function of :data:`RAW_DECODERS`
(:mod:`shufflenet_det.runtime.postprocess`'s anchor-head decoding for RetinaNet exports, its ``gfl_points`` decoding for
the lite detectors), chosen by the export report's ``postprocess.decoder`` (or by its anchor fields); other dense heads
register theirs with :func:`register_raw_decoder`. Measured speed and accuracy, and why int8 is no faster on x86 CPUs
without VNNI:
docs/int8.md.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .export_common import ExportError

#: Calibration methods of ONNX Runtime offered here (``CalibrationMethod`` names in lower case).
CALIBRATION_METHODS = ('minmax', 'entropy', 'percentile')
#: Activation types: ``uint8`` (asymmetric; ONNX Runtime's u8s8 kernels on x86) or ``int8``.
ACTIVATION_TYPES = ('uint8', 'int8')
#: Calibration images run through ONNX Runtime per chunk (the ranges of the chunks are merged).
CALIBRATION_CHUNK = 8


class QuantizationError(ExportError):
    """Quantization failed (nothing is written)."""


class AccuracyGateError(QuantizationError):
    """The int8 model loses more accuracy than allowed (nothing is written); ``report`` holds the measurements."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


@dataclasses.dataclass
class QuantConfig:
    """How a model is quantized.

    ``exclude`` names nodes kept in float; ``exclude_final_convs`` keeps every convolution with no convolution after
    it (the heads' last layers) in float; ``exclude_sensitive`` keeps the K convolutions that add the most error
    (:func:`sensitivity_report`) in float; the post-processing after the last convolutions
    (:func:`postprocess_nodes`) stays in float unless ``quantize_postprocess``. ``op_types`` restricts the quantized
    operator types (None: every type ONNX Runtime can quantize).
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


def quantizable_op_types() -> set[str]:
    """Operator types ONNX Runtime's ``quantize_static`` can quantize (its QDQ and QOperator registries: what it
    quantizes when no ``op_types_to_quantize`` is given)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
    return set(QDQRegistry) | set(QLinearOpsRegistry)


#: Operators that only a quantized model holds (QDQ pairs, QOperator and integer kernels).
QUANTIZED_OPS = ('QuantizeLinear', 'DequantizeLinear', 'DynamicQuantizeLinear', 'QLinearConv', 'QLinearMatMul',
                 'ConvInteger', 'MatMulInteger')


def check_float_model(model: Any, source: str | os.PathLike = 'the model') -> None:
    """:class:`QuantizationError` naming ``source`` when the ``onnx.ModelProto`` already holds quantized operators
    (:data:`QUANTIZED_OPS`): quantizing it again would stack a second QDQ layer on the first, which ONNX Runtime
    cannot load."""
    found: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in QUANTIZED_OPS:
            found[node.op_type] = found.get(node.op_type, 0) + 1
    if found:
        raise QuantizationError(f'{str(source)!r} is already quantized (it holds '
                                + ', '.join(f'{n} {op}' for op, n in sorted(found.items()))
                                + ' nodes); quantize the float export of tools/deploy/export_onnx.py')


# ---------------------------------------------------------------------------------------------------- data
def dataset_split(cfg: Any, split: str) -> tuple[Path, Path]:
    """(annotation file, image folder) of the config's ``train`` / ``val`` / ``test`` dataloader dataset."""
    if split not in ('train', 'val', 'test'):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    loader = cfg.get(f'{split}_dataloader')
    if loader is None or loader.get('dataset') is None:
        raise ValueError(f'the config has no {split}_dataloader.dataset')
    ds = loader.dataset
    while ds.get('dataset') is not None:  # RepeatDataset, ClassBalancedDataset, ... wrap the COCO dataset
        ds = ds.dataset
    if ds.get('ann_file') is None:
        raise ValueError(f'{split}_dataloader.dataset has no ann_file (a COCO-format dataset is needed)')
    root = Path(ds.get('data_root', '') or '')
    return root / ds.ann_file, root / (ds.get('data_prefix') or {}).get('img', '')


def sample_images(ann_file: str | os.PathLike, img_dir: str | os.PathLike, num: int, seed: int = 0) -> list[Path]:
    """``num`` image files of a COCO annotation file, drawn without replacement (deterministic in ``seed``).

    ValueError naming the file when it cannot be read or holds fewer than ``num`` images.
    """
    if num < 1:
        raise ValueError(f'the number of calibration images must be >= 1, got {num}')
    try:
        images = json.loads(Path(ann_file).read_text())['images']
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f'annotation file {str(ann_file)!r} cannot be read as COCO json: {exc}') from exc
    if len(images) < num:
        raise ValueError(f'{str(ann_file)!r} has {len(images)} images, fewer than the {num} calibration images '
                         'asked for (--num-calib, times the batch of a static export)')
    images = sorted(images, key=lambda im: im['id'])
    pick = np.random.default_rng(seed).choice(len(images), size=num, replace=False)
    return [Path(img_dir) / images[i]['file_name'] for i in sorted(pick)]


def calibration_tensors(paths: Sequence[str | os.PathLike], size: Sequence[int], preprocess: dict[str, Any],
                        batch: int = 1) -> list[np.ndarray]:
    """Input tensors ``(batch, 3, H, W)`` of images prepared as for the export (:func:`.images.prepare_image`).

    Consecutive images form a batch; a last incomplete batch is dropped (at least one full batch is needed).
    """
    from .images import prepare_image, read_image
    singles = [prepare_image(read_image(p, 'calibration image'), size, preprocess)[0].numpy() for p in paths]
    if len(singles) < batch:
        raise ValueError(f'{len(singles)} images cannot fill one batch of {batch}')
    return [np.concatenate(singles[i:i + batch]) for i in range(0, len(singles) - batch + 1, batch)]


# ---------------------------------------------------------------------------------------------------- graph
def _attr(node: Any, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            import onnx
            return onnx.helper.get_attribute_value(a)
    return default


def _conv_after(graph: Any) -> list[bool]:
    """Per node index: whether a Conv node is reachable from its outputs (nodes are in topological order)."""
    nodes = list(graph.node)
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for t in node.input:
            consumers.setdefault(t, []).append(i)
    conv_after = [False] * len(nodes)
    for i in range(len(nodes) - 1, -1, -1):
        nxt = [c for t in nodes[i].output for c in consumers.get(t, [])]
        conv_after[i] = any(nodes[c].op_type == 'Conv' or conv_after[c] for c in nxt)
    return conv_after


def postprocess_nodes(model: Any) -> list[str]:
    """Names of the nodes after the last convolutions: score activation, box decoding, top-k, NMS, output layout.

    Every non-Conv node from which no Conv is reachable. 8-bit tensors there would quantize box coordinates to a
    fraction of the input size (2.5 px steps over 640 px) and cost mAP at high IoU; it is a small share of the time.
    """
    conv_after = _conv_after(model.graph)
    return [n.name for i, n in enumerate(model.graph.node) if n.op_type != 'Conv' and not conv_after[i]]


def conv_nodes(model: Any) -> list[dict[str, Any]]:
    """Every Conv node: ``name``, ``kind`` (depthwise / pointwise / conv / grouped) and ``final`` (no Conv after it).

    ``model`` is an ``onnx.ModelProto`` (nodes in topological order, as ONNX requires).
    """
    graph = model.graph
    dims = {i.name: list(i.dims) for i in graph.initializer}
    conv_after = _conv_after(graph)
    out = []
    for i, node in enumerate(graph.node):
        if node.op_type != 'Conv':
            continue
        group = int(_attr(node, 'group', 1))
        w = dims.get(node.input[1]) if len(node.input) > 1 else None
        kernel = list(_attr(node, 'kernel_shape', w[2:] if w else []))
        if group > 1 and w is not None and w[1] == 1 and group == w[0]:
            kind = 'depthwise'
        elif group > 1:
            kind = 'grouped'
        elif kernel and all(k == 1 for k in kernel):
            kind = 'pointwise'
        else:
            kind = 'conv'
        out.append(dict(name=node.name, kind=kind, final=not conv_after[i]))
    return out


def resolve_exclusions(config: QuantConfig, model: Any) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The convolutions of ``model`` (:func:`conv_nodes`) and ``{node name: why}`` of the nodes kept in float:
    ``option``, ``final conv`` or ``postprocess``.

    ValueError for a named node that is not in the graph (with the graph's convolutions as a hint).
    """
    convs = conv_nodes(model)
    known = {n.name for n in model.graph.node}
    unknown = [n for n in config.exclude if n not in known]
    if unknown:
        hint = ', '.join(c['name'] for c in convs[:6])
        raise ValueError(f'nodes to keep in float (--exclude) {unknown} are not nodes of the model (its '
                         f'convolutions: {hint}, ...; list them with tools/deploy/quantize.py --list-nodes)')
    if config.op_types:
        present = {n.op_type for n in model.graph.node}
        if not present & set(config.op_types):
            raise ValueError(f'operator types to quantize (--op-types) {list(config.op_types)}: the model has no '
                             f'node of these types, nothing would be quantized; its quantizable types: '
                             f'{sorted(present & quantizable_op_types())}')
    why = dict.fromkeys(config.exclude, 'option')
    for c in convs:
        if config.exclude_final_convs and c['final']:
            why.setdefault(c['name'], 'final conv')
    if not config.quantize_postprocess:
        for name in postprocess_nodes(model):
            why.setdefault(name, 'postprocess')
    return convs, why


# ---------------------------------------------------------------------------------------------------- ORT calls
@contextlib.contextmanager
def scratch_dir(prefix: str = 'shufflenet_det_quant_') -> Iterator[Path]:
    """A private temporary folder, also the process's temporary folder meanwhile (ONNX Runtime's quantization tools
    write their augmented models and shape-inferred copies there); removed with its contents in every case."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    previous = tempfile.tempdir
    tempfile.tempdir = str(path)
    try:
        yield path
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _quiet_ort_logging() -> Iterator[None]:
    """ONNX Runtime's quantization tools log advice through the root logger and its C++ logger; keep both to errors
    meanwhile."""
    import onnxruntime as ort
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    ort.set_default_logger_severity(3)  # the C++ side: its notes on unused initializers after optimisation
    try:
        yield
    finally:
        root.setLevel(level)
        ort.set_default_logger_severity(2)  # onnxruntime's default (warnings)


def _reader(input_name: str, tensors: Sequence[np.ndarray]) -> Any:
    """A ``CalibrationDataReader`` over ``tensors`` that supports ONNX Runtime's chunked calibration."""
    from onnxruntime.quantization import CalibrationDataReader

    class TensorReader(CalibrationDataReader):
        def __init__(self) -> None:
            self.set_range(0, len(tensors))

        def __len__(self) -> int:
            return len(tensors)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._it = iter(tensors[start_index:end_index])

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {input_name: x}
    return TensorReader()


def preprocess_for_quantization(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """ONNX Runtime's ``quant_pre_process`` (symbolic shape inference is skipped when it cannot handle the graph)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process
    with _quiet_ort_logging():
        try:
            quant_pre_process(str(src), str(dst))
        except Exception:  # noqa: BLE001 - symbolic shape inference does not know every op (e.g. NMS graphs)
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)


def _chunk(n: int) -> int:
    """The largest chunk size <= CALIBRATION_CHUNK that divides ``n`` (ONNX Runtime requires equal chunks)."""
    return max(d for d in range(1, min(n, CALIBRATION_CHUNK) + 1) if n % d == 0)


def quantize_file(src: str | os.PathLike, dst: str | os.PathLike, tensors: Sequence[np.ndarray], input_name: str,
                  config: QuantConfig, exclude: Sequence[str] = (), cache: str | os.PathLike | None = None) -> None:
    """``quantize_static`` of ``src`` (pre-processed) into ``dst``: QDQ, int8 weights, calibrated on ``tensors``.

    ``cache`` (a JSON file) stores the calibrated ranges the first time and reuses them afterwards, so a second
    quantization with other nodes excluded does not calibrate again.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    if not tensors:
        raise ValueError('quantization needs at least one calibration tensor')
    # chunked calibration: the ranges (MinMax) or histograms (entropy, percentile) of each chunk are merged, so
    # memory stays bounded. (CalibMaxIntermediateOutputs would be the other way, but in onnxruntime 1.32 its MinMax
    # calibrator discards the outputs collected before each clear.) Histograms are collected one image at a time:
    # onnxruntime stacks a chunk's values of a tensor into one array, which fails for tensors whose shape depends on
    # the image (the candidates after top-k / NMS).
    extra: dict[str, Any] = dict(CalibStridedMinMax=_chunk(len(tensors)) if config.method == 'minmax' else 1)
    if config.method == 'percentile':
        extra['CalibPercentile'] = float(config.percentile)
    method = {'minmax': CalibrationMethod.MinMax, 'entropy': CalibrationMethod.Entropy,
              'percentile': CalibrationMethod.Percentile}[config.method]
    act = QuantType.QUInt8 if config.activation_type == 'uint8' else QuantType.QInt8
    with _quiet_ort_logging(), contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print
        try:
            quantize_static(str(src), str(dst), _reader(input_name, tensors), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(config.op_types) if config.op_types else None,
                            per_channel=config.per_channel, reduce_range=config.reduce_range, activation_type=act,
                            weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude), calibrate_method=method,
                            extra_options=extra, calibration_cache_path=str(cache) if cache else None)
        except (ValueError, OSError):
            raise
        except Exception as exc:  # onnxruntime's own failures become one clear error
            raise QuantizationError(f'onnxruntime quantization of {Path(src).name} failed: '
                                    f'{type(exc).__name__}: {str(exc)[:300]}') from exc
    if exclude:
        import onnx
        model = onnx.load(str(dst))
        if keep_outputs_float(model, exclude):
            onnx.save(model, str(dst))


#: Single-input operators ONNX Runtime moves quantization through (QuantizeLinear is propagated backwards over
#: them, ReLU / Clip are absorbed into it): a float convolution's output must stay float up to the next other op.
PASS_THROUGH = ('Relu', 'Clip', 'Reshape', 'Unsqueeze', 'Squeeze', 'Transpose', 'Flatten', 'MaxPool', 'Slice',
                'Gather', 'Resize', 'Identity')


def keep_outputs_float(model: Any, names: Sequence[str]) -> int:
    """Remove the QuantizeLinear -> DequantizeLinear pairs on the outputs of the Conv nodes ``names``, in place.

    A convolution left out of the quantization but still between a DequantizeLinear and a QuantizeLinear is
    quantized again by ONNX Runtime when a session is created (its ``WeightBiasQuantization`` optimizer gives it
    per-tensor int8 weights and fuses it into a QLinearConv; its QDQ propagation first moves a QuantizeLinear back
    over reshapes and ReLUs): leaving a layer "in float" would change nothing, or make it worse. So the pairs on
    its output - directly or after :data:`PASS_THROUGH` operators - are removed: the convolution stays float, and
    so do the convolutions that read its output (their input is no longer dequantized; ONNX Runtime folds their
    int8 weights back to float). Returns the number of pairs removed.
    """
    wanted = set(names)
    nodes = list(model.graph.node)
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for t in n.input:
            consumers.setdefault(t, []).append(i)
    graph_outputs = {o.name for o in model.graph.output}
    drop: set[int] = set()
    for conv in nodes:
        if conv.op_type != 'Conv' or conv.name not in wanted:
            continue
        todo, seen = [conv.output[0]], set()
        while todo:
            y = todo.pop()
            if y in seen:
                continue
            seen.add(y)
            for qi in consumers.get(y, []):
                q = nodes[qi]
                if q.op_type in PASS_THROUGH and q.input[0] == y:
                    todo.append(q.output[0])
                    continue
                if q.op_type != 'QuantizeLinear' or qi in drop or q.output[0] in graph_outputs:
                    continue
                dqs = consumers.get(q.output[0], [])
                if any(nodes[d].op_type != 'DequantizeLinear' or nodes[d].output[0] in graph_outputs for d in dqs):
                    continue  # quantized values that leave the graph or feed a quantized op directly: keep
                for d in dqs:
                    for ui in consumers.get(nodes[d].output[0], []):
                        user = nodes[ui]
                        for k, t in enumerate(user.input):
                            if t == nodes[d].output[0]:
                                user.input[k] = y
                    drop.add(d)
                drop.add(qi)
    for i in sorted(drop, reverse=True):
        del model.graph.node[i]
    return sum(1 for i in drop if nodes[i].op_type == 'QuantizeLinear')


def runtime_convs(path: str | os.PathLike, workdir: str | os.PathLike) -> dict[str, Any]:
    """How ONNX Runtime (CPU, all optimisations) runs the convolutions of a model, from the graph it optimises at
    session creation: the number of ``int8`` (QLinearConv) and ``float`` (Conv / FusedConv, NCHWc or not) nodes, and
    ``int8_nodes``, the names of the Conv nodes behind its QLinearConvs."""
    import re

    import onnx
    import onnxruntime as ort
    optimized = Path(workdir) / f'{Path(path).stem}.ort_optimized.onnx'
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.optimized_model_filepath = str(optimized)
    opts.log_severity_level = 3
    ort.InferenceSession(str(path), sess_options=opts, providers=['CPUExecutionProvider'])
    nodes = list(onnx.load(str(optimized)).graph.node)
    optimized.unlink()
    ops = [n.op_type for n in nodes]
    return dict(int8=ops.count('QLinearConv'), float=ops.count('Conv') + ops.count('FusedConv'),
                int8_nodes=sorted(re.sub(r'_token_\d+$', '', n.name) for n in nodes if n.op_type == 'QLinearConv'))


# ---------------------------------------------------------------------------------------------------- measuring
def _session(model: Any, threads: int) -> Any:
    """An ONNX Runtime CPU session of a path or an in-memory ``onnx.ModelProto``."""
    import onnxruntime as ort

    from .onnx_export import ort_session
    if isinstance(model, (str, os.PathLike)):
        return ort_session(model, threads=threads)
    opts = ort.SessionOptions()
    if threads > 0:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=['CPUExecutionProvider'])


def _with_outputs(model: Any, names: Sequence[str]) -> Any:
    """A copy of ``model`` whose graph also outputs the tensors ``names``."""
    import onnx
    out = onnx.ModelProto()
    out.CopyFrom(model)
    present = {o.name for o in out.graph.output}
    for name in names:
        if name not in present:
            out.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
            present.add(name)
    return out


class _RelError:
    """Accumulates ``||int8 - float|| / ||float||`` over calls (``||int8 - float||`` when the float tensor is all
    zero, so that the value stays finite and JSON-serialisable)."""

    def __init__(self) -> None:
        self.err = 0.0
        self.ref = 0.0

    def add(self, got: np.ndarray, ref: np.ndarray) -> None:
        ref64 = np.asarray(ref, np.float64)
        self.err += float(np.sum((np.asarray(got, np.float64) - ref64) ** 2))
        self.ref += float(np.sum(ref64 ** 2))

    @property
    def value(self) -> float:
        return (self.err / self.ref) ** 0.5 if self.ref > 0 else self.err ** 0.5


def sensitivity_report(float_path: str | os.PathLike, int8_path: str | os.PathLike, tensors: Sequence[np.ndarray],
                       input_name: str, threads: int = 0) -> list[dict[str, Any]]:
    """The error every convolution of the int8 model adds, most harmful first.

    For each Conv node of the QDQ model (its name is that of the float model's node) the int8 model's dequantized
    input and dequantized output are compared with the float model's tensors on ``tensors``: ``input_error`` and
    ``output_error`` are ``||int8 - float|| / ||float||`` over all images, ``added_error`` their difference (what
    quantizing this layer's weights and output adds to the error it receives). ``quantized`` is False for the
    convolutions kept in float.
    """
    import onnx
    fmodel, qmodel = onnx.load(str(float_path)), onnx.load(str(int8_path))
    producer = {t: n for n in qmodel.graph.node for t in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in qmodel.graph.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    float_tensors = {t for n in fmodel.graph.node for t in n.output} | {i.name for i in fmodel.graph.input}

    def float_name(t: str) -> str:  # a dequantized tensor of the int8 graph -> the float tensor it stands for
        dq = producer.get(t)
        if dq is not None and dq.op_type == 'DequantizeLinear':
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == 'QuantizeLinear':
                return q.input[0]
        return t

    def dequantized(t: str) -> str:  # the value consumers of t see in the int8 graph: DQ(Q(t)) when quantized
        for q in consumers.get(t, []):
            if q.op_type == 'QuantizeLinear':
                for dq in consumers.get(q.output[0], []):
                    if dq.op_type == 'DequantizeLinear':
                        return dq.output[0]
        return t

    kinds = {c['name']: c['kind'] for c in conv_nodes(fmodel)}  # the int8 graph's weights are not initializers
    entries = []
    for node in qmodel.graph.node:
        if node.op_type != 'Conv':
            continue
        q_in, q_out = node.input[0], dequantized(node.output[0])
        f_in, f_out = float_name(q_in), node.output[0]
        if f_in not in float_tensors or f_out not in float_tensors:
            continue  # not a tensor of the float graph (cannot happen for graphs quantized here)
        w = producer.get(node.input[1])
        entries.append(dict(node=node.name, kind=kinds.get(node.name), quantized=bool(w is not None and
                                                                                       w.op_type == 'DequantizeLinear'),
                            pairs=((q_in, f_in), (q_out, f_out))))
    q_names = sorted({q for e in entries for q, _ in e['pairs']} - {input_name})
    f_names = sorted({f for e in entries for _, f in e['pairs']} - {input_name})
    fsess = _session(_with_outputs(fmodel, f_names), threads)
    qsess = _session(_with_outputs(qmodel, q_names), threads)
    errors: dict[tuple[str, str], _RelError] = {}
    for x in tensors:
        feed = {input_name: x}
        fv = dict(zip(f_names, fsess.run(f_names, feed))) if f_names else {}
        qv = dict(zip(q_names, qsess.run(q_names, feed))) if q_names else {}
        fv[input_name] = qv[input_name] = x
        for e in entries:
            for q, f in e['pairs']:
                errors.setdefault((q, f), _RelError()).add(qv[q], fv[f])
    report = []
    for e in entries:
        (qi, fi), (qo, fo) = e['pairs']
        ein, eout = errors[(qi, fi)].value, errors[(qo, fo)].value
        report.append(dict(node=e['node'], kind=e['kind'], quantized=e['quantized'], input_error=ein,
                           output_error=eout, added_error=eout - ein))
    report.sort(key=lambda r: -r['added_error'])
    return report


def output_errors(float_session: Any, int8_session: Any, tensors: Sequence[np.ndarray]) -> dict[str, float]:
    """``||int8 - float|| / ||float||`` of every floating-point graph output over ``tensors``."""
    name = float_session.get_inputs()[0].name
    outs = [o.name for o in float_session.get_outputs() if o.type == 'tensor(float)']
    acc = {o: _RelError() for o in outs}
    for x in tensors:
        ref = float_session.run(outs, {name: x})
        got = int8_session.run(outs, {name: x})
        for o, r, g in zip(outs, ref, got):
            acc[o].add(g, r)
    return {o: a.value for o, a in acc.items()}


def time_models(sessions: Sequence[Any], x: np.ndarray, runs: int, warmup: int = 5, rounds: int = 5
                ) -> list[dict[str, float]]:
    """Latency statistics of each session on ``x``, timed together in rounds (the benchmark's harness)."""
    from ..runtime.timing import time_in_rounds
    calls = []
    for sess in sessions:
        feed = {sess.get_inputs()[0].name: x}
        calls.append(lambda s=sess, f=feed: s.run(None, f))
    stats = time_in_rounds(calls, runs, warmup, rounds=rounds)
    for s in stats:
        if isinstance(s, Exception):
            raise QuantizationError(f'timing failed: {type(s).__name__}: {s}')
    return stats  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------------- detectors
def _decode(outputs: Sequence[np.ndarray], meta: dict[str, Any], img_hw: tuple[int, int]) -> dict[str, np.ndarray]:
    """The numpy decoder of the ncnn runner (:func:`shufflenet_det.runtime.postprocess.decode_outputs`), which reads
    the export's ``postprocess`` meta: one decoding path for every backend without NMS in the graph."""
    from ..runtime.postprocess import decode_outputs
    return decode_outputs(outputs, meta, img_hw)


#: Decoders of raw detector outputs (no NMS in the graph): ``(outputs of one image, postprocess meta, (H, W))`` ->
#: ``boxes`` (N, 4) in input pixels, ``scores`` (N,), ``labels`` (N,). ``anchor_head``: RetinaNet-like exports
#: (class maps then box-delta maps per level); ``gfl_points``: the lite detectors' one ``(1, N, C + 4 (reg_max + 1))``
#: tensor (:func:`shufflenet_det.runtime.postprocess.postprocess_gfl`).
RAW_DECODERS: dict[str, Callable[[Sequence[np.ndarray], dict[str, Any], tuple[int, int]], dict[str, np.ndarray]]] = {
    'anchor_head': _decode, 'gfl_points': _decode}


def register_raw_decoder(name: str, fn: Callable[[Sequence[np.ndarray], dict[str, Any], tuple[int, int]],
                                                 dict[str, np.ndarray]]) -> None:
    """Register the decoder of a raw export whose report says ``postprocess.decoder == name``."""
    RAW_DECODERS[name] = fn


def raw_decoder_name(report: dict[str, Any]) -> str | None:
    """The :data:`RAW_DECODERS` entry for a detector exported without NMS, None when there is none."""
    pp = report.get('postprocess') or {}
    name = pp.get('decoder') or ('anchor_head' if 'base_anchors' in pp else None)
    return name if name in RAW_DECODERS else None


class DetectionsSession:
    """A session of a detector without NMS in its graph that answers like one with it.

    ``run`` decodes the raw outputs (one image per call) with a :data:`RAW_DECODERS` function and returns
    ``num_dets (1,), boxes (1, N, 4), scores (1, N), labels (1, N)``, so :func:`.evaluate.evaluate_onnx` scores it.
    """

    def __init__(self, session: Any, decode: Callable[..., dict[str, np.ndarray]], meta: dict[str, Any]) -> None:
        self.session, self.decode, self.meta = session, decode, meta

    def get_inputs(self) -> Any:  # noqa: D102
        return self.session.get_inputs()

    def run(self, output_names: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:  # noqa: D102
        x = next(iter(feed.values()))
        if x.shape[0] != 1:
            raise ValueError(f'raw detector outputs are decoded one image at a time, got a batch of {x.shape[0]}')
        dets = self.decode(self.session.run(None, feed), self.meta, (int(x.shape[2]), int(x.shape[3])))
        n = len(dets['scores'])
        return [np.asarray([n], np.int64), np.asarray(dets['boxes'], np.float32).reshape(1, n, 4),
                np.asarray(dets['scores'], np.float32).reshape(1, n), np.asarray(dets['labels']).reshape(1, n)]


def model_kind(report: dict[str, Any]) -> str:
    """``backbone``, ``detector`` (NMS in the graph) or ``raw-detector`` from an export report."""
    if report.get('what') == 'detector':
        return 'detector' if report.get('with_nms') else 'raw-detector'
    if report.get('what') == 'backbone':
        return 'backbone'
    raise ValueError(f"export report has what={report.get('what')!r}; expected 'backbone' or 'detector'")


def _scorable(report: dict[str, Any], session: Any) -> Any:
    """The session as :func:`.evaluate.evaluate_onnx` needs it, or None when its outputs cannot be decoded."""
    kind = model_kind(report)
    if kind == 'detector':
        return session
    if kind == 'raw-detector':
        name = raw_decoder_name(report)
        if name is not None:
            return DetectionsSession(session, RAW_DECODERS[name], report['postprocess'])
    return None


@dataclasses.dataclass
class ValidationSet:
    """The COCO-format set the float and int8 models are scored on (``limit``: its first images only)."""

    ann_file: Path
    img_dir: Path
    classes: list[str]
    limit: int | None = None

    def paths(self) -> list[Path]:
        """The image files evaluated."""
        images = json.loads(Path(self.ann_file).read_text())['images']
        images = images[:self.limit] if self.limit is not None else images
        return [Path(self.img_dir) / im['file_name'] for im in images]


# ---------------------------------------------------------------------------------------------------- the tool
def quantize_unchecked(model_path: str | os.PathLike, out_path: str | os.PathLike, calibration: Sequence[np.ndarray],
                       config: QuantConfig | None = None, input_name: str = 'input') -> dict[str, Any]:
    """Quantize without scoring (the benchmark's ``ort-int8`` row): ``out_path`` and what was kept in float.

    The same steps as :func:`quantize_onnx` up to the QDQ model (no sensitivity, no gate, no report file); the
    output is written atomically. Returns ``quantized_convs``, ``float_convs`` and ``kept_in_float``.
    """
    import onnx

    from ..utils.io import atomic_outputs
    config = (config or QuantConfig()).validate()
    if config.exclude_sensitive:
        raise ValueError('exclude_sensitive needs the sensitivity report of quantize_onnx')
    with scratch_dir() as work:
        pre, int8 = work / 'float.onnx', work / 'int8.onnx'
        preprocess_for_quantization(model_path, pre)
        pre_model = onnx.load(str(pre))
        check_float_model(pre_model, model_path)
        convs, excluded = resolve_exclusions(config, pre_model)
        quantize_file(pre, int8, calibration, input_name, config, list(excluded))
        quantized = _quantized_convs(onnx.load(str(int8)))
        with atomic_outputs([out_path], 'int8 model') as (tmp,):
            shutil.copyfile(int8, tmp)
    return dict(quantized_convs=len(quantized), float_convs=len(convs) - len(quantized),
                kept_in_float=_grouped(excluded))


def _grouped(why: dict[str, str]) -> dict[str, list[str]]:
    """``{node: reason}`` -> ``{reason: [nodes]}``."""
    out: dict[str, list[str]] = {}
    for name, reason in why.items():
        out.setdefault(reason, []).append(name)
    return out


def _quantized_convs(model: Any) -> list[str]:
    """Names of the Conv nodes of a QDQ model that run in int8: dequantized input and dequantized int8 weights (the
    pattern ONNX Runtime fuses into a QLinearConv; a Conv whose input is float runs in float)."""
    dq_out = {t for n in model.graph.node if n.op_type == 'DequantizeLinear' for t in n.output}
    return sorted(n.name for n in model.graph.node if n.op_type == 'Conv' and len(n.input) > 1
                  and n.input[0] in dq_out and n.input[1] in dq_out)


def _copy_fields(report: dict[str, Any]) -> dict[str, Any]:
    """The fields of the float model's report that describe the int8 model too (inputs, outputs, classes, ...)."""
    keep = ('what', 'detector', 'backbone', 'input_name', 'output_names', 'input_shape', 'dynamic', 'opset',
            'bn_folded', 'with_nms', 'classes', 'postprocess', 'out_channels', 'out_strides')
    return {k: report[k] for k in keep if k in report}


def _score(report: dict[str, Any], model_path: Path, fsess: Any, qsess: Any, validation: ValidationSet,
           size: Sequence[int], preprocess: dict[str, Any], say: Callable[[str], None]) -> dict[str, Any]:
    """The float and int8 models on the validation set: both COCO mAPs and the drop when the outputs can be decoded
    into detections, and the relative error of every float output for graphs without NMS."""
    from .evaluate import evaluate_onnx
    kind = model_kind(report)
    out: dict[str, Any] = {}
    f_scored, q_scored = _scorable(report, fsess), _scorable(report, qsess)
    if f_scored is not None:
        for which, sess in (('float', f_scored), ('int8', q_scored)):
            r = evaluate_onnx(model_path, validation.ann_file, validation.img_dir, validation.classes, size,
                              preprocess, limit=validation.limit, session=sess)
            out.update({which: r['onnx'], 'num_images': r['num_images'], f'{which}_detections': r['onnx_detections']})
        out['map_drop'] = out['float']['bbox_mAP'] - out['int8']['bbox_mAP']
        say(f"[quantize] bbox mAP on {out['num_images']} validation images: float {out['float']['bbox_mAP']:.4f}, "
            f"int8 {out['int8']['bbox_mAP']:.4f} (drop {out['map_drop']:+.4f})")
    elif kind == 'raw-detector':
        out['map_unavailable'] = ('no decoder for these raw outputs in RAW_DECODERS (postprocess.decoder '
                                  f"{(report.get('postprocess') or {}).get('decoder')!r})")
    if kind != 'detector':
        batch = int((report.get('input_shape') or [1])[0]) if not report.get('dynamic') else 1
        val = calibration_tensors(validation.paths(), size, preprocess, batch)
        out['output_error'] = output_errors(fsess, qsess, val)
        out['output_error_images'] = len(val) * batch
        say(f"[quantize] output error (||int8 - float|| / ||float||) on {len(val) * batch} validation images: "
            + ', '.join(f'{k} {v:.4f}' for k, v in out['output_error'].items()))
    return out


def _latency(fsess: Any, qsess: Any, x: np.ndarray, runs: int, threads: int, say: Callable[[str], None]
             ) -> dict[str, Any]:
    """Float and int8 latency on ``x``, timed in the same rounds, with the load average of the machine."""
    f_stats, q_stats = time_models([fsess, qsess], x, runs)
    out: dict[str, Any] = dict(threads=threads, runs=runs, float_ms=f_stats['median_ms'], int8_ms=q_stats['median_ms'],
                               ratio=q_stats['median_ms'] / f_stats['median_ms'], float=f_stats, int8=q_stats)
    with contextlib.suppress(OSError, AttributeError):
        out['loadavg_1m'] = os.getloadavg()[0]
    say(f"[quantize] latency ({threads} threads, median of {runs} x 5 rounds): float {out['float_ms']:.2f} ms, int8 "
        f"{out['int8_ms']:.2f} ms ({out['ratio']:.2f}x)")
    return out


def _gate_failures(accuracy: dict[str, Any], max_map_drop: float | None, max_output_error: float | None
                   ) -> list[str]:
    """Why the int8 model is refused ([] when it passes)."""
    failures = []
    if max_map_drop is not None and 'map_drop' in accuracy and accuracy['map_drop'] > max_map_drop + 1e-12:
        failures.append(f"bbox mAP drops by {accuracy['map_drop']:.4f} (float {accuracy['float']['bbox_mAP']:.4f} -> "
                        f"int8 {accuracy['int8']['bbox_mAP']:.4f}), more than --max-map-drop {max_map_drop}")
    if max_output_error is not None:
        bad = {k: v for k, v in (accuracy.get('output_error') or {}).items() if not v <= max_output_error}
        if bad:
            failures.append(f'output error {bad} exceeds --max-output-error {max_output_error}')
    return failures


def quantize_onnx(model_path: str | os.PathLike, out_path: str | os.PathLike, report: dict[str, Any],
                  calibration: Sequence[np.ndarray], config: QuantConfig | None = None, *,
                  validation: ValidationSet | None = None, size: Sequence[int] | None = None,
                  preprocess: dict[str, Any] | None = None, max_map_drop: float | None = 0.02,
                  max_output_error: float | None = None, sensitivity_images: int = 8, bench_runs: int = 50,
                  threads: int = 2, calibration_info: dict[str, Any] | None = None,
                  log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Quantize an exported ONNX model to int8 and write it with its report, unless it loses too much accuracy.

    ``report`` is the export report of ``model_path`` (``<model>.onnx.json``); ``calibration`` the input tensors
    (:func:`calibration_tensors`). With ``validation`` (and the ``size`` and ``preprocess`` its images are prepared
    with), the float and the int8 model are scored on it: COCO bbox mAP for detectors (with NMS in the graph, or a
    :data:`RAW_DECODERS` decoder), and the relative error of every float output for graphs without NMS. The gate:
    :class:`AccuracyGateError` (nothing written) when the mAP drops by more than ``max_map_drop`` or an output error
    exceeds ``max_output_error`` (None: not checked). ``bench_runs`` > 0 times both models in the same rounds with
    ``threads`` threads. Returns the report written to ``<out>.json``.
    """
    import onnx
    import onnxruntime as ort

    from ..utils.io import atomic_outputs
    from .onnx_export import report_path_of
    config = (config or QuantConfig()).validate()
    model_path, out_path = Path(model_path), Path(out_path)
    if out_path.suffix != '.onnx':
        raise ValueError(f'output {str(out_path)!r} must end with .onnx')
    if out_path.resolve() == model_path.resolve():
        raise ValueError(f'output {str(out_path)!r} is the float model itself; choose another path')
    if max_map_drop is not None and not max_map_drop >= 0:
        raise ValueError(f'max_map_drop must be >= 0 (or None), got {max_map_drop}')
    if max_output_error is not None and not max_output_error >= 0:
        raise ValueError(f'max_output_error must be >= 0 (or None), got {max_output_error}')
    if sensitivity_images < 0 or bench_runs < 0 or threads < 0:
        raise ValueError('sensitivity_images, bench_runs and threads must be >= 0')
    if config.exclude_sensitive and not (sensitivity_images and len(calibration)):
        raise ValueError('exclude_sensitive needs the sensitivity report: sensitivity_images must be >= 1')
    if validation is not None and (size is None or preprocess is None):
        raise ValueError('scoring on a validation set needs the size and preprocess its images are prepared with')
    model_kind(report)  # ValueError for a report that is not an export's
    say = log or (lambda _: None)
    input_name = report.get('input_name', 'input')
    t0 = time.perf_counter()
    with scratch_dir() as work:
        pre, int8, cache = work / 'float.onnx', work / 'int8.onnx', work / 'calibration.json'
        preprocess_for_quantization(model_path, pre)
        pre_model = onnx.load(str(pre))
        check_float_model(pre_model, model_path)
        convs, excluded = resolve_exclusions(config, pre_model)
        groups = _grouped(excluded)
        say(f'[quantize] {len(convs)} convolutions, kept in float: '
            + (', '.join(f'{len(v)} {k}' for k, v in groups.items()) or 'none')
            + f' (nodes); calibrating on {len(calibration)} tensors ({config.method})')
        quantize_file(pre, int8, calibration, input_name, config, list(excluded), cache)
        sens_tensors = list(calibration[:sensitivity_images])
        sensitivity = sensitivity_report(pre, int8, sens_tensors, input_name, threads) if sens_tensors else []
        if config.exclude_sensitive:
            top = [e['node'] for e in sensitivity if e['quantized']][:config.exclude_sensitive]
            for name in top:
                excluded.setdefault(name, 'sensitivity')
            say(f'[quantize] keeping the {len(top)} most sensitive convolutions in float: {top}')
            quantize_file(pre, int8, calibration, input_name, config, list(excluded), cache)
        qmodel = onnx.load(str(int8))
        ops = [n.op_type for n in qmodel.graph.node]
        quantized = _quantized_convs(qmodel)
        runtime = runtime_convs(int8, work)
        conv_names = {c['name'] for c in convs}
        requantized = sorted(n for n in excluded if n in conv_names and n in set(runtime['int8_nodes']))
        if requantized:  # not expected after keep_outputs_float; reported, never hidden
            say(f'[quantize] warning: onnxruntime runs these convolutions kept in float in int8: {requantized}')
        fsess, qsess = _session(model_path, threads), _session(int8, threads)
        accuracy = dict(max_map_drop=max_map_drop, max_output_error=max_output_error)
        if validation is not None:
            accuracy.update(_score(report, model_path, fsess, qsess, validation, size, preprocess, say))
        latency = _latency(fsess, qsess, calibration[0], bench_runs, threads, say) if bench_runs else None
        failures = _gate_failures(accuracy, max_map_drop, max_output_error)
        accuracy['passed'] = not failures
        result = dict(model=out_path.name, format='onnx', **_copy_fields(report), quantization=dict(
            source=str(model_path), tool=f'onnxruntime {ort.__version__} quantize_static', format='QDQ',
            weights=f"int8 {'per-channel' if config.per_channel else 'per-tensor'} symmetric"
                    f"{' (7-bit reduce_range)' if config.reduce_range else ''}",
            activations=config.activation_type, config=config.as_dict(), calibration=dict(
                num_tensors=len(calibration), **(calibration_info or {})),
            quantized_convs=len(quantized), float_convs=len(convs) - len(quantized),
            onnxruntime_convs=runtime, requantized_by_onnxruntime=requantized,
            kept_in_float=_grouped(excluded), op_counts=dict(QuantizeLinear=ops.count('QuantizeLinear'),
                                                   DequantizeLinear=ops.count('DequantizeLinear'))),
            accuracy=accuracy, latency=latency, sensitivity=dict(
                images=len(sens_tensors), layers=sensitivity,
                metric='||int8 - float|| / ||float|| of the dequantized conv input / output; added_error = '
                       'output_error - input_error'),
            seconds=None)
        if failures:
            raise AccuracyGateError(f'int8 model of {str(model_path)!r} refused, nothing written: '
                                    + '; '.join(failures), result)
        result['seconds'] = round(time.perf_counter() - t0, 2)
        with atomic_outputs([out_path, report_path_of(out_path)], 'int8 model') as (tmp, tmp_report):
            shutil.copyfile(int8, tmp)
            tmp_report.write_text(json.dumps(result, indent=2) + '\n')
    return result
