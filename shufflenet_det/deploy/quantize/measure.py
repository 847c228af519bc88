"""What quantization costs, measured against the float model: the error each convolution adds (the sensitivity
report), the relative error of every output, and the latency of both models timed in the same rounds
(:mod:`shufflenet_det.runtime.timing`, the benchmark's harness)."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .calibration import ValidationSet, calibration_tensors
from .config import QuantizationError
from .detection import model_kind, scorable_session
from .graph import conv_nodes


def cpu_session(model: Any, threads: int) -> Any:
    """An ONNX Runtime CPU session of a path or an in-memory ``onnx.ModelProto``."""
    import onnxruntime as ort

    from ..onnx_export import ort_session
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
    fsess = cpu_session(_with_outputs(fmodel, f_names), threads)
    qsess = cpu_session(_with_outputs(qmodel, q_names), threads)
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
    from ...runtime.timing import time_in_rounds
    calls = []
    for sess in sessions:
        feed = {sess.get_inputs()[0].name: x}
        calls.append(lambda s=sess, f=feed: s.run(None, f))
    stats = time_in_rounds(calls, runs, warmup, rounds=rounds)
    for s in stats:
        if isinstance(s, Exception):
            raise QuantizationError(f'timing failed: {type(s).__name__}: {s}')
    return stats  # type: ignore[return-value]


def measure_latency(fsess: Any, qsess: Any, x: np.ndarray, runs: int, threads: int, say: Callable[[str], None]
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


def score_models(report: dict[str, Any], model_path: Path, fsess: Any, qsess: Any, validation: ValidationSet,
                 size: Sequence[int], preprocess: dict[str, Any], say: Callable[[str], None]) -> dict[str, Any]:
    """The float and int8 models on the validation set: both COCO mAPs and the drop when the outputs can be decoded
    into detections (:func:`.detection.scorable_session`), and the relative error of every float output for graphs
    without NMS."""
    from ..evaluate import evaluate_onnx
    kind = model_kind(report)
    out: dict[str, Any] = {}
    f_scored, q_scored = scorable_session(report, fsess), scorable_session(report, qsess)
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
