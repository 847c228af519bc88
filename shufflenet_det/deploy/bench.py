"""Latency / throughput benchmark of backbones and detectors across deployment paths, in one process.

Every row of a run is measured on the same machine, with the same input and thread count, and the backends of one
model and input size are timed in rounds (a block of consecutive calls of each per round, :func:`time_in_rounds`), so a
load change on a shared machine affects all of them alike and the ratios between rows stay meaningful even when the
absolute numbers are noisy; every block starts with untimed calls, so the worker threads another runtime leaves
spinning are not charged to the next one.
Backends:

===================  ===================================================================================
``torch-plain``      PyTorch eager, NCHW, BatchNorm kept - the torchvision formulation (baseline)
``torch-folded``     eager, BN folded into the convolutions (``switch_to_deploy``)
``torch-cl``         eager, BN folded, channels_last tensors, ``inference_mode``
``torch-jit``        BN folded, TorchScript trace + freeze + ``optimize_for_inference`` (oneDNN)
``torch-compile``    BN folded, channels_last, ``torch.compile`` (opt-in: compiling takes minutes on 2 cores)
``ort-plain``        ONNX Runtime (CPU) on the plain export: BN kept, no graph simplification (baseline)
``ort-deploy``       ONNX Runtime on the deploy export: BN folded, onnxslim, shuffle interleave, dw-chain padding
``ncnn``             ncnn (pnnx export, BN folded), timed by tools/deploy/ncnn_runner.py in a child process
``ort-cuda``         ONNX Runtime CUDA provider on the deploy export (when the provider is available)
``cuda-fp32/fp16``   PyTorch on the GPU, BN folded, channels_last (when a CUDA device is present)
===================  ===================================================================================

Detectors are timed from the normalised input tensor to the final detections: mmdet's ``predict`` for the PyTorch
rows, the graph with NMS for ONNX Runtime, the raw head plus the numpy post-processing for ncnn.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib.util
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

RUNNER = Path(__file__).resolve().parents[2] / 'tools' / 'deploy' / 'ncnn_runner.py'
CPU_BACKENDS = ('torch-plain', 'torch-folded', 'torch-cl', 'torch-jit', 'ort-plain', 'ort-deploy', 'ncnn')
GPU_BACKENDS = ('ort-cuda', 'cuda-fp32', 'cuda-fp16')
OPTIONAL_BACKENDS = ('torch-compile',)
ALL_BACKENDS = CPU_BACKENDS + OPTIONAL_BACKENDS + GPU_BACKENDS
DEFAULT_BACKENDS = CPU_BACKENDS + GPU_BACKENDS
EAGER_BASELINE, ORT_BASELINE = 'torch-plain', 'ort-plain'


class Unavailable(Exception):
    """A backend or peer model that cannot run here (the reason is reported, nothing is faked)."""


@dataclasses.dataclass
class Row:
    """One measured (or unavailable) configuration."""

    model: str
    backend: str
    size: tuple[int, int]
    batch: int
    threads: int
    status: str = 'ok'  # ok | unavailable | error
    note: str = ''
    median_ms: float | None = None
    p90_ms: float | None = None
    min_ms: float | None = None
    mean_ms: float | None = None
    throughput: float | None = None  # images per second at the median latency
    vs_torch_plain: float | None = None
    vs_ort_plain: float | None = None

    def as_dict(self) -> dict[str, Any]:  # noqa: D102
        d = dataclasses.asdict(self)
        d['size'] = list(self.size)
        return d


def _stats(times: Sequence[float]) -> dict[str, float]:
    ordered = sorted(times)
    return dict(median_ms=statistics.median(ordered), p90_ms=float(np.percentile(ordered, 90)),
                min_ms=ordered[0], mean_ms=statistics.fmean(ordered))


def time_in_rounds(fns: Sequence[Callable[[], Any]], runs: int, warmup: int, progress: Any = None,
                   rounds: int = 5) -> list[dict[str, float] | Exception]:
    """Time several callables in ``rounds`` rounds of consecutive calls each, re-warmed at every switch.

    Every callable gets ``runs`` timed calls in all, split over the rounds (so a load change on a shared machine
    hits all of them alike), and before each of its blocks ``max(3, warmup // rounds)`` untimed calls. The blocks
    matter: runtimes keep their worker threads spinning for a while after a call (ONNX Runtime's intra-op pool,
    OpenMP), so timing A right after B charges A for B's spinning threads. Measured here with two ONNX Runtime
    sessions in one process: alternating every 10 calls gave a p90 near 7 ms for a 2.2 ms model, blocks of 250
    gave p90 within 6% of the median, and the same figures as each session in a process of its own.
    Returns latency statistics per callable in milliseconds (or the exception it raised).
    """
    if rounds < 1:
        raise ValueError(f'rounds must be >= 1, got {rounds}')
    times: list[list[float]] = [[] for _ in fns]
    failed: dict[int, Exception] = {}
    rounds = min(rounds, runs)
    rewarm = max(3, warmup // rounds)

    def block(i: int, n: int, timed: bool) -> None:
        for _ in range(n):
            if i in failed:
                return
            t0 = time.perf_counter()
            try:
                fns[i]()
            except Exception as exc:  # noqa: BLE001 - reported in its row, the others go on
                failed[i] = exc
                return
            if timed:
                times[i].append((time.perf_counter() - t0) * 1e3)

    for i in range(len(fns)):  # first warm-up: lazy initialisation, allocator, caches
        block(i, warmup, timed=False)
        if progress is not None:
            progress.update(warmup)
    for r in range(rounds):
        n = runs // rounds + (1 if r < runs % rounds else 0)
        for i in range(len(fns)):
            block(i, rewarm, timed=False)
            block(i, n, timed=True)
            if progress is not None:
                progress.update(n)
    return [failed[i] if i in failed else _stats(ts) for i, ts in enumerate(times)]


# ---------------------------------------------------------------------------------------------------- models
def folded(model: nn.Module) -> nn.Module:
    """A deep copy with every ``switch_to_deploy`` applied (BN folded); unchanged models without one."""
    model = copy.deepcopy(model).eval()
    for m in list(model.modules()):
        if hasattr(m, 'switch_to_deploy') and not getattr(m, 'deployed', False):
            m.switch_to_deploy()
    return model


def _detector_predict(detector: nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    from mmdet.structures import DetDataSample
    h, w = x.shape[2:]
    samples = []
    for _ in range(x.shape[0]):
        s = DetDataSample()
        s.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), batch_input_shape=(h, w),
                            scale_factor=(1.0, 1.0)))
        samples.append(s)
    return lambda: detector.predict(x, samples, rescale=False)


def is_detector(model: nn.Module) -> bool:
    """True for mmdet detectors (they have ``extract_feat``)."""
    return hasattr(model, 'extract_feat')


class Bench:
    """Builds one callable per backend for a model at one input size; exports live in a scratch folder."""

    def __init__(self, name: str, model: nn.Module, size: tuple[int, int], batch: int, threads: int,
                 workdir: Path, images: Sequence[torch.Tensor] | None = None) -> None:
        self.name, self.model, self.size, self.batch, self.threads = name, model.eval(), size, batch, threads
        self.workdir = workdir
        self.detector = is_detector(model)
        gen = torch.Generator().manual_seed(0)
        if images:
            self.x = torch.cat([images[i % len(images)] for i in range(batch)])
        else:
            self.x = torch.randn((batch, 3, *size), generator=gen)
        self._onnx: dict[str, Path] = {}
        self._rewrites: dict[str, int] = {}

    # -------------------------------------------------------------- torch
    def _torch_fn(self, model: nn.Module, x: torch.Tensor) -> Callable[[], Any]:
        if self.detector:
            return _detector_predict(model, x)
        return lambda: model(x)

    def torch_plain(self) -> tuple[Callable[[], Any], str]:  # noqa: D102
        fn = self._torch_fn(self.model, self.x)
        return _no_grad(fn), 'NCHW, BN kept, no_grad'

    def torch_folded(self) -> tuple[Callable[[], Any], str]:  # noqa: D102
        return _no_grad(self._torch_fn(folded(self.model), self.x)), 'NCHW, BN folded, no_grad'

    def torch_cl(self) -> tuple[Callable[[], Any], str]:  # noqa: D102
        model = folded(self.model).to(memory_format=torch.channels_last)
        x = self.x.contiguous(memory_format=torch.channels_last)
        fn = self._torch_fn(model, x)

        def run() -> Any:
            with torch.inference_mode():
                return fn()
        return run, 'channels_last, BN folded, inference_mode'

    def torch_jit(self) -> tuple[Callable[[], Any], str]:  # noqa: D102
        if self.detector:
            raise Unavailable('TorchScript tracing covers tensor graphs only (detector post-processing is Python)')
        model = folded(self.model)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            traced = torch.jit.optimize_for_inference(torch.jit.trace(model, self.x, check_trace=False).eval())
            traced(self.x)
        return _no_grad(lambda: traced(self.x)), 'BN folded, trace + freeze + optimize_for_inference'

    def torch_compile(self) -> tuple[Callable[[], Any], str]:  # noqa: D102
        model = folded(self.model).to(memory_format=torch.channels_last)
        x = self.x.contiguous(memory_format=torch.channels_last)
        if self.detector:
            model.extract_feat = torch.compile(model.extract_feat)
            fn = self._torch_fn(model, x)
        else:
            compiled = torch.compile(model)
            fn = lambda: compiled(x)  # noqa: E731
        t0 = time.perf_counter()
        try:
            with torch.inference_mode():
                fn()
        except Exception as exc:  # noqa: BLE001 - any compiler failure makes this row unavailable
            raise Unavailable(f'torch.compile failed: {type(exc).__name__}: {str(exc)[:200]}') from exc
        note = f'BN folded, channels_last, inductor (compiled in {time.perf_counter() - t0:.0f} s)'

        def run() -> Any:
            with torch.inference_mode():
                return fn()
        return run, note

    def _cuda(self, dtype: torch.dtype) -> tuple[Callable[[], Any], str]:
        if not torch.cuda.is_available():
            raise Unavailable('no CUDA device (torch.cuda.is_available() is False)')
        model = folded(self.model).cuda().to(dtype=dtype, memory_format=torch.channels_last)
        x = self.x.cuda().to(dtype=dtype).contiguous(memory_format=torch.channels_last)
        fn = self._torch_fn(model, x)

        def run() -> Any:
            with torch.inference_mode():
                out = fn()
            torch.cuda.synchronize()
            return out
        return run, f'{torch.cuda.get_device_name()}, BN folded, channels_last'

    def cuda_fp32(self) -> tuple[Callable[[], Any], str]:  # noqa: D102
        return self._cuda(torch.float32)

    def cuda_fp16(self) -> tuple[Callable[[], Any], str]:  # noqa: D102
        if self.detector:
            raise Unavailable('mmdet post-processing (mmcv NMS) runs in fp32; time the backbone instead')
        return self._cuda(torch.float16)

    # -------------------------------------------------------------- ONNX Runtime
    def _export(self, kind: str) -> Path:
        from .onnx_export import export_backbone_onnx, export_detector_onnx
        if kind in self._onnx:
            return self._onnx[kind]
        path = self.workdir / f'{kind}.onnx'
        plain = kind == 'plain'
        kwargs = dict(opset=17, dynamic=False, fold_bn=not plain, simplify=None if plain else 'onnxslim',
                      graph_opt=not plain, verbose=False)
        if self.detector:
            report = export_detector_onnx(self.model, path, [self.x[:1]], **kwargs)
        else:
            report = export_backbone_onnx(self.model, path, tuple(self.x.shape), **kwargs)
        self._onnx[kind] = path
        self._rewrites = dict(report.get('graph_rewrites') or {})
        return path

    def _ort(self, kind: str, providers: list[str], tuned: bool) -> Callable[[], Any]:
        import onnxruntime as ort
        from .onnx_export import ort_session
        path = self._export(kind)
        if tuned:
            sess = ort_session(path, providers=providers, threads=self.threads, optimization='all')
        else:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.threads
            opts.log_severity_level = 3
            sess = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        feed = {sess.get_inputs()[0].name: self.x[:1].numpy() if self.detector else self.x.numpy()}
        if self.detector and self.batch > 1:
            return lambda: [sess.run(None, feed) for _ in range(self.batch)]
        return lambda: sess.run(None, feed)

    def ort_plain(self) -> tuple[Callable[[], Any], str]:  # noqa: D102
        return self._ort('plain', ['CPUExecutionProvider'], tuned=False), \
            'plain export (BN kept, no simplification), default session'

    def ort_deploy(self) -> tuple[Callable[[], Any], str]:  # noqa: D102
        fn = self._ort('deploy', ['CPUExecutionProvider'], tuned=True)
        rw = self._rewrites
        return fn, (f'BN folded + onnxslim + {rw.get("concat_shuffle_to_interleave", 0)} shuffle interleaves + '
                    f'{rw.get("depthwise_chain_padding", 0)} padded dw chains, ORT_ENABLE_ALL')

    def ort_cuda(self) -> tuple[Callable[[], Any], str]:  # noqa: D102
        import onnxruntime as ort
        if 'CUDAExecutionProvider' not in ort.get_available_providers():
            raise Unavailable(f'onnxruntime has no CUDAExecutionProvider (providers: {ort.get_available_providers()})')
        if not torch.cuda.is_available():
            raise Unavailable('no CUDA device (torch.cuda.is_available() is False)')
        return self._ort('deploy', ['CUDAExecutionProvider', 'CPUExecutionProvider'], tuned=True), \
            'BN folded + onnxslim, CUDA provider'

    # -------------------------------------------------------------- ncnn
    def ncnn(self, runs: int, warmup: int) -> tuple[dict[str, float], str]:
        """Export with pnnx, then time ``tools/deploy/ncnn_runner.py`` on the same input in a child process.

        A separate process because ncnn's OpenMP runtime and PyTorch's in one process disturb each other (their
        idle worker threads compete); it is also exactly what runs on a board. Detectors include the numpy
        post-processing. Returns latency statistics and a note.
        """
        if importlib.util.find_spec('ncnn') is None or importlib.util.find_spec('pnnx') is None:
            raise Unavailable('ncnn / pnnx not installed (pip install -r requirements/deploy.txt)')
        import json
        import subprocess
        import sys

        from .ncnn_export import export_backbone_ncnn, export_detector_ncnn
        out = self.workdir / 'model_ncnn'
        x1 = self.x[:1]
        if self.detector:
            export_detector_ncnn(self.model, out, [x1], verbose=False)
        else:
            export_backbone_ncnn(self.model, out, tuple(x1.shape), verbose=False)
        tensor, result = self.workdir / 'input.npy', self.workdir / 'ncnn_bench.json'
        np.save(tensor, x1.numpy())
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads))
        cmd = [sys.executable, str(RUNNER), str(out) + '.param', '--tensor', str(tensor), '--threads',
               str(self.threads), '--bench', str(runs), '--warmup', str(warmup), '--out-json', str(result)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f'ncnn_runner failed: {proc.stderr[-500:]}')
        lat = json.loads(result.read_text())['latency']
        stats = {k: lat[k] * self.batch for k in ('median_ms', 'p90_ms', 'min_ms', 'mean_ms')}
        note = 'pnnx export, BN folded, ncnn defaults, timed by ncnn_runner.py in its own process'
        if self.detector:
            note += ' (raw head + numpy post-processing)'
        if self.batch > 1:
            note += f'; batch {self.batch} = {self.batch} sequential images'
        return stats, note


def _no_grad(fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        with torch.no_grad():
            return fn()
    return run


BACKEND_METHODS = {'torch-plain': 'torch_plain', 'torch-folded': 'torch_folded', 'torch-cl': 'torch_cl',
                   'torch-jit': 'torch_jit', 'torch-compile': 'torch_compile', 'ort-plain': 'ort_plain',
                   'ort-deploy': 'ort_deploy', 'ncnn': 'ncnn', 'ort-cuda': 'ort_cuda', 'cuda-fp32': 'cuda_fp32',
                   'cuda-fp16': 'cuda_fp16'}


# ---------------------------------------------------------------------------------------------------- peers
def peer_models() -> list[tuple[str, Callable[[], nn.Module]]]:
    """ShuffleNetV2 1.0x implementations of other projects, as (name, builder); builders raise Unavailable.

    torchvision and mmpretrain are only used when they are installed and import cleanly; nothing is emulated.
    """
    def tv() -> nn.Module:
        if importlib.util.find_spec('torchvision') is None:
            raise Unavailable('torchvision is not installed')
        try:
            from torchvision.models import shufflenet_v2_x1_0
        except Exception as exc:  # noqa: BLE001
            raise Unavailable(f'torchvision does not import: {type(exc).__name__}: {exc}') from exc
        return shufflenet_v2_x1_0(weights=None).eval()

    def mmpre() -> nn.Module:
        if importlib.util.find_spec('mmpretrain') is None:
            raise Unavailable('mmpretrain is not installed')
        if importlib.util.find_spec('torchvision') is None:
            raise Unavailable('mmpretrain is installed but needs torchvision, which is not (not imported)')
        try:
            from mmpretrain.models.backbones import ShuffleNetV2 as MMPShuffleNetV2
        except Exception as exc:  # noqa: BLE001
            raise Unavailable(f'mmpretrain does not import: {type(exc).__name__}: {exc}') from exc
        return MMPShuffleNetV2(widen_factor=1.0).eval()

    return [('torchvision shufflenet_v2_x1_0', tv), ('mmpretrain ShuffleNetV2 1.0x', mmpre)]


# ---------------------------------------------------------------------------------------------------- driver
def run_benchmark(models: Sequence[tuple[str, nn.Module]], sizes: Sequence[tuple[int, int]], backends: Sequence[str],
                  batch: int = 1, threads: int = 2, runs: int = 50, warmup: int = 10,
                  peers: Sequence[tuple[str, Callable[[], nn.Module]]] = (), peer_backends: Sequence[str] = (
                      'torch-plain', 'torch-cl'), images: Sequence[torch.Tensor] | None = None,
                  progress: bool = True, log: Callable[[str], None] = print, rounds: int = 5) -> list[Row]:
    """Measure every (model, size, backend); unavailable backends become rows with a reason.

    The backends of one model and size are timed in ``rounds`` rounds (:func:`time_in_rounds`).
    """
    unknown = [b for b in backends if b not in BACKEND_METHODS]
    if unknown:
        raise ValueError(f'unknown backends {unknown}; available: {list(ALL_BACKENDS)}')
    if batch < 1 or threads < 1 or runs < 1 or warmup < 0 or rounds < 1:
        raise ValueError(f'batch, threads, runs and rounds must be >= 1 and warmup >= 0 (got batch={batch}, '
                         f'threads={threads}, runs={runs}, rounds={rounds}, warmup={warmup})')
    torch.set_num_threads(threads)
    os.environ.setdefault('OMP_NUM_THREADS', str(threads))
    bar = None
    if progress:
        try:
            from tqdm import tqdm
            total = (runs + warmup) * len(sizes) * (len(models) * len(backends) + len(peers) * len(peer_backends))
            bar = tqdm(total=total, unit='run', leave=False, dynamic_ncols=True)
        except ImportError:
            bar = None
    if any(b in GPU_BACKENDS for b in backends) and not torch.cuda.is_available():
        log('[benchmark] no CUDA device: the GPU rows (ort-cuda, cuda-fp32, cuda-fp16) are skipped')
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix='shufflenet_det_bench_') as tmp:
        jobs = [(name, model, backends) for name, model in models]
        for peer_name, builder in peers:
            try:
                jobs.append((peer_name, builder(), peer_backends))
            except Unavailable as exc:
                for size in sizes:
                    rows.append(Row(peer_name, '-', tuple(size), batch, threads, 'unavailable', str(exc)))
                if bar is not None:
                    bar.update((runs + warmup) * len(sizes) * len(peer_backends))
        for m_idx, (name, model, model_backends) in enumerate(jobs):
            for size in sizes:
                workdir = Path(tmp) / f'{m_idx}_{size[0]}x{size[1]}'
                workdir.mkdir()
                bench = Bench(name, model, tuple(size), batch, threads, workdir, images)
                group: list[tuple[Row, Callable[[], Any]]] = []
                for backend in model_backends:
                    row = Row(name, backend, tuple(size), batch, threads)
                    rows.append(row)
                    if bar is not None:
                        bar.set_description(f'{name[:24]} {backend} {size[0]}x{size[1]} (build)')
                    try:
                        if backend == 'ncnn':  # timed on its own, in a child process (see Bench.ncnn)
                            stats, row.note = bench.ncnn(runs, warmup)
                            row.median_ms, row.p90_ms = stats['median_ms'], stats['p90_ms']
                            row.min_ms, row.mean_ms = stats['min_ms'], stats['mean_ms']
                            row.throughput = batch * 1e3 / stats['median_ms']
                            if bar is not None:
                                bar.update(runs + warmup)
                            continue
                        fn, row.note = getattr(bench, BACKEND_METHODS[backend])()
                        group.append((row, fn))
                    except Unavailable as exc:
                        row.status, row.note = 'unavailable', str(exc)
                        if bar is not None:
                            bar.update(runs + warmup)
                    except Exception as exc:  # noqa: BLE001 - one failing backend must not lose the others
                        row.status, row.note = 'error', f'{type(exc).__name__}: {str(exc)[:300]}'
                        if bar is not None:
                            bar.update(runs + warmup)
                if bar is not None:
                    bar.set_description(f'{name[:24]} {size[0]}x{size[1]} (timing {len(group)} backends)')
                timed = time_in_rounds([g[1] for g in group], runs, warmup, bar, rounds=rounds)
                for row, stats in zip([g[0] for g in group], timed):
                    if isinstance(stats, Exception):
                        row.status, row.note = 'error', f'{type(stats).__name__}: {str(stats)[:300]}'
                        continue
                    row.median_ms, row.p90_ms = stats['median_ms'], stats['p90_ms']
                    row.min_ms, row.mean_ms = stats['min_ms'], stats['mean_ms']
                    row.throughput = batch * 1e3 / stats['median_ms']
                del bench
    if bar is not None:
        bar.close()
    add_ratios(rows)
    return rows


def add_ratios(rows: list[Row]) -> None:
    """Ratios to the torch-plain and ort-plain rows of the same model, size and batch."""
    base: dict[tuple, dict[str, float]] = {}
    for r in rows:
        if r.status == 'ok' and r.backend in (EAGER_BASELINE, ORT_BASELINE):
            base.setdefault((r.model, r.size, r.batch), {})[r.backend] = r.median_ms
    for r in rows:
        b = base.get((r.model, r.size, r.batch), {})
        if r.status == 'ok':
            if EAGER_BASELINE in b:
                r.vs_torch_plain = r.median_ms / b[EAGER_BASELINE]
            if ORT_BASELINE in b:
                r.vs_ort_plain = r.median_ms / b[ORT_BASELINE]


DEPLOY_BACKENDS = ('ort-deploy', 'ncnn', 'ort-cuda')
EAGER_BACKENDS = ('torch-folded', 'torch-cl', 'torch-jit', 'torch-compile')


def summarize(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Per model/size/batch: the best deploy path against ort-plain and the best PyTorch path against torch-plain."""
    out = []
    groups: dict[tuple, list[Row]] = {}
    for r in rows:
        if r.status == 'ok':
            groups.setdefault((r.model, r.size, r.batch), []).append(r)
    for (model, size, batch), rs in groups.items():
        entry: dict[str, Any] = dict(model=model, size=list(size), batch=batch)
        for key, names, ratio in (('best_deploy', DEPLOY_BACKENDS, 'vs_ort_plain'),
                                  ('best_eager', EAGER_BACKENDS, 'vs_torch_plain')):
            cand = [r for r in rs if r.backend in names]
            if cand:
                best = min(cand, key=lambda r: r.median_ms)
                entry[key] = dict(backend=best.backend, median_ms=best.median_ms, ratio=getattr(best, ratio))
        out.append(entry)
    return out


def format_summary(summary: Sequence[dict[str, Any]]) -> str:
    """Human lines for :func:`summarize`."""
    lines = []
    for e in summary:
        head = f"{e['model']} {e['size'][0]}x{e['size'][1]} batch {e['batch']}:"
        parts = []
        if 'best_deploy' in e:
            d = e['best_deploy']
            ratio = f"{d['ratio']:.2f}x ort-plain" if d['ratio'] is not None else 'no ort-plain row'
            parts.append(f"best deploy path {d['backend']} {d['median_ms']:.2f} ms = {ratio}")
        if 'best_eager' in e:
            d = e['best_eager']
            ratio = f"{d['ratio']:.2f}x torch-plain" if d['ratio'] is not None else 'no torch-plain row'
            parts.append(f"best PyTorch path {d['backend']} {d['median_ms']:.2f} ms = {ratio}")
        if parts:
            lines.append(head + ' ' + '; '.join(parts))
    return '\n'.join(lines)


def environment() -> dict[str, Any]:
    """Versions and machine facts stored with the results."""
    env: dict[str, Any] = dict(torch=torch.__version__, python=platform.python_version(),
                               machine=platform.machine(), processor=platform.processor() or None,
                               cpu_count=os.cpu_count(), cuda=torch.cuda.is_available())
    try:
        env['loadavg_1m'] = os.getloadavg()[0]
    except OSError:
        pass
    for mod in ('onnxruntime', 'ncnn', 'onnx', 'mmdet', 'mmdeploy'):
        if importlib.util.find_spec(mod) is not None:
            try:
                env[mod] = __import__(mod).__version__
            except Exception:  # noqa: BLE001
                env[mod] = 'unknown'
    if torch.cuda.is_available():
        env['gpu'] = torch.cuda.get_device_name()
    return env


def format_table(rows: Sequence[Row]) -> str:
    """A plain-text table of the rows."""
    head = ['model', 'backend', 'size', 'batch', 'median ms', 'p90 ms', 'min ms', 'img/s', 'x torch-plain',
            'x ort-plain', 'note']
    lines = []
    for r in rows:
        f = (lambda v, p=2: '-' if v is None else f'{v:.{p}f}')
        lines.append([r.model, r.backend, f'{r.size[0]}x{r.size[1]}', str(r.batch), f(r.median_ms), f(r.p90_ms),
                      f(r.min_ms), f(r.throughput, 1), f(r.vs_torch_plain), f(r.vs_ort_plain),
                      (r.status.upper() + ': ' if r.status != 'ok' else '') + r.note])
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(head)]
    widths[-1] = len(head[-1])
    fmt = lambda cells: '  '.join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [fmt(head), fmt(['-' * w for w in widths])]
    out += [fmt(line) for line in lines]
    return '\n'.join(out)


def plot(rows: Sequence[Row], path: str | os.PathLike, maps: dict[str, float] | None = None) -> Path:
    """Latency against input size per (model, backend); or, with ``maps`` ({model: mAP}), mAP against latency."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from .atomic import atomic_outputs
    ok = [r for r in rows if r.status == 'ok']
    fig, ax = plt.subplots(figsize=(8, 5))
    if maps:
        for model, value in maps.items():
            pts = [r for r in ok if r.model == model]
            for r in pts:
                ax.scatter(r.median_ms, value)
                ax.annotate(f'{model}\n{r.backend} {r.size[0]}', (r.median_ms, value), fontsize=7)
        ax.set_xlabel('median latency (ms)')
        ax.set_ylabel('mAP')
        ax.set_title('accuracy vs latency')
    else:
        series: dict[tuple[str, str], list[Row]] = {}
        for r in ok:
            series.setdefault((r.model, r.backend), []).append(r)
        for (model, backend), pts in sorted(series.items()):
            pts.sort(key=lambda r: r.size[0] * r.size[1])
            ax.plot([f'{r.size[0]}x{r.size[1]}' for r in pts], [r.median_ms for r in pts], marker='o',
                    label=f'{model} / {backend}')
        ax.set_xlabel('input size')
        ax.set_ylabel('median latency (ms)')
        threads = ok[0].threads if ok else 1
        ax.set_title(f'latency vs input size (batch {ok[0].batch if ok else 1}, {threads} '
                     f'thread{"s" if threads != 1 else ""})')
        ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_outputs([path]) as (tmp,):
        fig.savefig(tmp, format='png', dpi=120)
    plt.close(fig)
    return Path(path)
