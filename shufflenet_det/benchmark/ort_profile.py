"""Where an ONNX model's time goes in ONNX Runtime: its profiler's kernel times, by operator and by kind.

:func:`profile_models` runs one or more ONNX files in ONNX Runtime sessions with the options of the benchmark's
``ort-deploy`` / ``ort-raw`` / ``ort-peer`` rows (:func:`.backends.ort_session_of`: every graph optimisation, the
given intra-op threads) and ONNX Runtime's profiler on, in interleaved rounds (so that a slow spell of a shared
machine falls on every model alike), and sums the profiler's per-node kernel times of the timed runs (warm-up runs
left out) into :class:`OpProfile`:

* per operator type *after ONNX Runtime's graph optimisations* (``FusedConv`` is a convolution with its activation,
  ``ReorderInput`` / ``ReorderOutput`` the conversions to and from the blocked NCHWc layout, ...), and per kind
  (:data:`KINDS`): convolutions, data movement (copies and layout changes: concatenation, split, slices, transposes,
  reshapes, the NCHWc reorders, resizing) and the rest (pooling, element-wise ops);
* the convolutions' multiply-adds, counted on the ONNX file's own graph at the profiled input (the shapes of one
  run), and so their rate in GMAC/s;
* the median time of one run of the model in a second session of the same options *without* the profiler (timed
  in the same rounds), which also holds the executor's work between the kernels: the profiler's bookkeeping makes
  the profiled runs slower, so the profile gives the shares, the plain session the times.

:func:`reference_conv_rate` times one large 1x1 convolution in the same session options: the rate ONNX Runtime
reaches on this CPU, with which a model's convolution rate is compared.

What it answers: with a peer model (the same network exported by another project), how much of the gap is in
the convolutions (which the network fixes) and how much in the data movement around them -
:func:`ort_floor` is the project model's convolutions' share of its run time over the peer's run time: what the
ratio of the two would be with everything outside the convolutions removed, the floor for any rewrite that keeps
them. ``tools/analysis_tools/ort_profile.py`` is the command line.
"""
from __future__ import annotations

import dataclasses
import json
import math
import statistics
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..runtime.timing import KINDS, conv_floor
from .backends import ort_session_of
from .peer_files import PeerFile

#: Operator types (as ONNX Runtime's profiler names them, after its graph optimisations) per kind.
CONV_OPS = frozenset({'Conv', 'FusedConv', 'NhwcConv', 'NhwcFusedConv', 'QLinearConv', 'ConvInteger',
                      'ConvTranspose'})
MOVE_OPS = frozenset({'Concat', 'Split', 'Slice', 'Transpose', 'Reshape', 'Unsqueeze', 'Squeeze', 'Flatten',
                      'ReorderInput', 'ReorderOutput', 'Gather', 'DepthToSpace', 'SpaceToDepth', 'Identity',
                      'Expand', 'Tile', 'Pad', 'Resize', 'Upsample', 'Cast'})

#: The reference convolution of :func:`reference_conv_rate`: 1x1, 256 -> 256 channels, 56x56 (205.5 M MAC).
REFERENCE_CONV = dict(channels=256, size=56)


def kind_of(op_type: str) -> str:
    """``'convolution'``, ``'data movement'`` or ``'other'`` for an operator type of the profiler."""
    return KINDS[0] if op_type in CONV_OPS else KINDS[1] if op_type in MOVE_OPS else KINDS[2]


@dataclasses.dataclass
class OpProfile:
    """The profile of one model: per-run means of the profiler's kernel times (ms) of the timed runs."""

    path: str
    input_shape: tuple[int, ...]
    runs: int
    run_ms: float  # median time of one run in the session without the profiler
    profiled_run_ms: float  # median wall time of one profiled run (``model_run``)
    by_op: dict[str, float]  # operator type -> ms per run
    nodes: list[tuple[str, str, float]]  # (node name, operator type, ms per run), slowest first
    conv_macs: Optional[int]  # multiply-adds of the ONNX graph's convolutions; None when shapes are unknown
    conv_macs_note: str = ''

    @property
    def kernel_ms(self) -> float:
        """The kernels' time per run (the run's wall time less the executor's work between kernels)."""
        return sum(self.by_op.values())

    def kind_ms(self, kind: str) -> float:
        """Time per run of one of :data:`KINDS`."""
        return sum(ms for op, ms in self.by_op.items() if kind_of(op) == kind)

    @property
    def conv_gmacs(self) -> Optional[float]:
        """The convolutions' rate, 1e9 multiply-adds per second (None without :attr:`conv_macs`)."""
        conv_ms = self.kind_ms(KINDS[0])
        if self.conv_macs is None or conv_ms <= 0:
            return None
        return self.conv_macs / (conv_ms * 1e-3) / 1e9

    def to_json(self, top: int) -> dict[str, Any]:
        return dict(path=self.path, input_shape=list(self.input_shape), runs=self.runs, run_ms=self.run_ms,
                    profiled_run_ms=self.profiled_run_ms, kernel_ms=self.kernel_ms,
                    kinds_ms={k: self.kind_ms(k) for k in KINDS},
                    by_op_ms=dict(sorted(self.by_op.items(), key=lambda kv: -kv[1])),
                    conv_macs=self.conv_macs, conv_gmacs_per_s=self.conv_gmacs, conv_macs_note=self.conv_macs_note,
                    slowest_nodes=[dict(node=n, op=op, ms=ms) for n, op, ms in self.nodes[:top]])


def input_shape_of(peer: PeerFile, size: Optional[tuple[int, int]]) -> tuple[int, ...]:
    """The profiled input shape of a checked ONNX file: its static dimensions, batch 1 and ``size`` (H, W) where
    they are dynamic. ValueError when ``size`` is needed but missing, or contradicts a static H / W."""
    dims = list(peer.input_shape)
    if dims[1] is None:
        raise ValueError(f'{peer.path}: its input {peer.input_name!r} has a dynamic channel dimension: only H, W and '
                         'the batch may be dynamic')
    static_hw = tuple(dims[2:])
    if size is None:
        if None in static_hw:
            raise ValueError(f'{peer.path}: its input {peer.input_name!r} has a dynamic height or width: give '
                             '--size H W')
    elif all(d is not None for d in static_hw) and static_hw != tuple(size):
        raise ValueError(f'--size {size[0]} {size[1]}: {peer.path} has the static input size '
                         f'{static_hw[0]}x{static_hw[1]}; omit --size or give that size')
    hw = [d if d is not None else s for d, s in zip(static_hw, size or static_hw)]
    return (dims[0] or 1, int(dims[1]), int(hw[0]), int(hw[1]))  # type: ignore[arg-type]


#: Convolution operator types of ONNX -> the index of their weight input.
_CONV_WEIGHT_INPUT = {'Conv': 1, 'ConvInteger': 1, 'QLinearConv': 3, 'ConvTranspose': 1}


def conv_macs_of(path: str | Path, feed: dict[str, np.ndarray]) -> tuple[Optional[int], str]:
    """Multiply-adds of the convolutions of an ONNX file on ``feed``: ``(macs, '')``, or ``(None, why)``.

    The shapes are those of one run of the graph as written (ONNX Runtime, graph optimisations off) with every
    convolution's input, weight and output added to the graph's outputs: exact where ONNX shape inference gives up
    (shapes computed at run time, as exporters write a channel shuffle). Int8 convolutions count like fp32 ones.
    """
    import onnx
    import onnxruntime as ort
    model = onnx.load(str(path))
    convs = [n for n in model.graph.node if n.op_type in _CONV_WEIGHT_INPUT]
    if not convs:
        return 0, ''
    inits = {t.name: tuple(t.dims) for t in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    wanted = {name for n in convs for name in (n.input[0], n.input[_CONV_WEIGHT_INPUT[n.op_type]], n.output[0])
              if name not in inits}
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in sorted(wanted - outputs))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(model.SerializeToString(), sess_options=opts,
                                    providers=['CPUExecutionProvider'])
        names = [o.name for o in sess.get_outputs()]
        shapes = {name: tuple(v.shape) for name, v in zip(names, sess.run(None, feed))}
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own error types
        return None, f'the shapes run failed ({type(exc).__name__}: {str(exc).strip()[:120]})'
    shapes.update(inits)
    total = 0
    for node in convs:
        inp, out = shapes[node.input[0]], shapes[node.output[0]]
        weight = shapes[node.input[_CONV_WEIGHT_INPUT[node.op_type]]]
        if node.op_type == 'ConvTranspose':  # every input pixel meets the whole kernel of its group
            total += math.prod(inp) * math.prod(weight[1:])
        else:  # every output pixel meets (C_in / group) x kernel inputs
            total += math.prod(out) * math.prod(weight[1:])
    return total, ''


def _kernel_events(trace: list[dict[str, Any]], warmup: int) -> tuple[list[float], list[tuple[str, str, float]]]:
    """The wall times (ms) of the timed runs and their kernel events ``(node, op, µs)`` from a profiler trace; the
    first ``warmup`` runs and everything outside a run (session set-up) are left out."""
    runs = sorted((e['ts'], e['ts'] + e['dur']) for e in trace
                  if e.get('cat') == 'Session' and e.get('name') == 'model_run')[warmup:]
    if not runs:
        return [], []
    starts = [r[0] for r in runs]
    events = []
    for e in trace:
        if e.get('cat') != 'Node' or not e.get('name', '').endswith('_kernel_time'):
            continue
        i = int(np.searchsorted(starts, e['ts'], side='right')) - 1
        if i >= 0 and e['ts'] <= runs[i][1]:
            events.append((e['name'][:-len('_kernel_time')], e['args'].get('op_name', '?'), float(e['dur'])))
    return [(b - a) / 1000.0 for a, b in runs], events


def _summarise(peer: PeerFile, feed: dict[str, np.ndarray], trace: list[dict[str, Any]], warmup: int,
               plain_ms: Sequence[float]) -> OpProfile:
    run_times, events = _kernel_events(trace, warmup)
    runs = len(run_times)
    by_op: dict[str, float] = {}
    by_node: dict[tuple[str, str], float] = {}
    for node, op, us in events:
        by_op[op] = by_op.get(op, 0.0) + us / 1000.0 / runs
        by_node[(node, op)] = by_node.get((node, op), 0.0) + us / 1000.0 / runs
    nodes = sorted(((n, op, ms) for (n, op), ms in by_node.items()), key=lambda t: -t[2])
    macs, note = conv_macs_of(peer.path, feed)
    shape = tuple(next(iter(feed.values())).shape)
    return OpProfile(str(peer.path), shape, runs, statistics.median(plain_ms), statistics.median(run_times), by_op,
                     nodes, macs, note)


def profile_models(models: Sequence[PeerFile], size: Optional[tuple[int, int]], threads: int, runs: int,
                   warmup: int, rounds: int, seed: int = 0) -> list[OpProfile]:
    """Profile checked ONNX files (:func:`.peer_files.check_peer_onnx`) at ``size`` (H, W where the input is
    dynamic), ``threads`` intra-op threads: two sessions per model, one with the profiler and one without,
    ``warmup`` untimed then ``runs`` timed runs each, in ``rounds`` interleaved rounds; the same random input
    (``seed``) for all. The profiler's trace files are written to a temporary folder and removed."""
    import time

    import onnxruntime as ort
    if runs < 1 or warmup < 0 or not 1 <= rounds <= runs:
        raise ValueError(f'runs must be >= 1, warmup >= 0 and rounds in [1, runs]; got runs={runs}, '
                         f'warmup={warmup}, rounds={rounds}')
    shapes = [input_shape_of(m, size) for m in models]
    rng = np.random.default_rng(seed)
    feeds = [{m.input_name: rng.random(shape, dtype=np.float32)} for m, shape in zip(models, shapes)]
    traces = []
    with tempfile.TemporaryDirectory(prefix='ort_profile_') as tmp:
        sessions, plain = [], []
        for i, model in enumerate(models):
            opts = ort.SessionOptions()
            opts.enable_profiling = True
            opts.profile_file_prefix = str(Path(tmp) / f'model{i}')
            sessions.append(ort_session_of(model.path, threads, ['CPUExecutionProvider'], True, opts))
            plain.append(ort_session_of(model.path, threads, ['CPUExecutionProvider'], True))
            if plain[-1].get_inputs()[0].type != 'tensor(float)':
                raise ValueError(f'{model.path}: its input {model.input_name!r} is a {plain[-1].get_inputs()[0].type}; '
                                 'only float32 image tensors are profiled')
        for sess, bare, feed in zip(sessions, plain, feeds):
            for _ in range(warmup):
                sess.run(None, feed)
                bare.run(None, feed)
        plain_ms: list[list[float]] = [[] for _ in models]
        per_round = [runs // rounds + (1 if r < runs % rounds else 0) for r in range(rounds)]
        for n in per_round:
            for sess, bare, feed, times in zip(sessions, plain, feeds, plain_ms):
                for _ in range(n):
                    t0 = time.perf_counter()
                    bare.run(None, feed)
                    times.append((time.perf_counter() - t0) * 1000.0)
                for _ in range(n):
                    sess.run(None, feed)
        for sess in sessions:
            traces.append(json.loads(Path(sess.end_profiling()).read_text()))
    return [_summarise(m, f, t, warmup, p) for m, f, t, p in zip(models, feeds, traces, plain_ms)]


def reference_conv_rate(threads: int, runs: int = 20) -> float:
    """GMAC/s of ONNX Runtime on one 1x1 convolution of :data:`REFERENCE_CONV` (random weights, the session
    options of :func:`profile_models`): the best median of ``runs`` calls in 3 blocks."""
    import time

    import onnx
    from onnx import TensorProto, helper, numpy_helper
    c, s = REFERENCE_CONV['channels'], REFERENCE_CONV['size']
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node('Conv', ['x', 'w'], ['y'], kernel_shape=[1, 1])], 'reference_conv',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, c, s, s])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, c, s, s])],
        [numpy_helper.from_array(rng.standard_normal((c, c, 1, 1), dtype=np.float32), 'w')])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)])
    model.ir_version = 8
    with tempfile.TemporaryDirectory(prefix='ort_reference_') as tmp:
        path = Path(tmp) / 'reference_conv.onnx'
        onnx.save(model, str(path))
        sess = ort_session_of(path, threads, ['CPUExecutionProvider'], True)
    feed = {'x': rng.random((1, c, s, s), dtype=np.float32)}
    for _ in range(3):
        sess.run(None, feed)
    best = math.inf
    for _ in range(3):
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            sess.run(None, feed)
            times.append(time.perf_counter() - t0)
        best = min(best, statistics.median(times))
    return c * c * s * s / best / 1e9


def ort_floor(model: OpProfile, peer: OpProfile) -> float:
    """:func:`shufflenet_det.runtime.timing.conv_floor` of two profiles: the model's run time and its
    convolutions' share of its kernel time (the executor's work between kernels is shared out like the kernel time),
    over the peer's run time."""
    return conv_floor(model.run_ms, model.kind_ms(KINDS[0]), model.kernel_ms, peer.run_ms)


def format_profile(p: OpProfile, top: int, reference_gmacs: Optional[float] = None) -> str:
    """The profile as text: totals, kinds, operator types and the slowest nodes."""
    lines = [f'{p.path} ({"x".join(map(str, p.input_shape))}, {p.runs} runs): run {p.run_ms:.3f} ms (median; '
             f'{p.profiled_run_ms:.3f} ms profiled), kernels {p.kernel_ms:.3f} ms (profiled)']
    for kind in KINDS:
        ms = p.kind_ms(kind)
        share = 100.0 * ms / p.kernel_ms if p.kernel_ms else 0.0
        line = f'  {kind:<14} {ms:8.3f} ms {share:5.1f} %'
        if kind == KINDS[0]:
            if p.conv_gmacs is not None:
                line += f'   {p.conv_macs / 1e6:.1f} M MAC at {p.conv_gmacs:.1f} GMAC/s'  # type: ignore[operator]
                if reference_gmacs:
                    line += f' ({100.0 * p.conv_gmacs / reference_gmacs:.0f} % of the reference convolution)'
            else:
                line += f'   (no MAC count: {p.conv_macs_note})'
        lines.append(line)
    lines.append('  by operator:')
    for op, ms in sorted(p.by_op.items(), key=lambda kv: -kv[1]):
        lines.append(f'    {op:<20} {kind_of(op):<14} {ms:8.3f} ms')
    if top > 0:
        lines.append(f'  slowest {min(top, len(p.nodes))} nodes:')
        for node, op, ms in p.nodes[:top]:
            lines.append(f'    {ms:8.3f} ms  {op:<14} {node}')
    return '\n'.join(lines)
