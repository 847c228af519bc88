"""What a benchmark run reports: ratios between rows, the summary, the table, the plot and the environment.

* :func:`add_ratios` - every row against the ``torch-plain``, ``ort-plain`` and ``ort-deploy`` rows of its model, size
  and batch;
* :func:`summarize` / :func:`format_summary` - the best deploy path and the best PyTorch path per model and size;
* :func:`backbone_ratios` - detectors' network-only rows against a bare backbone's rows of the same run;
* :func:`peer_ratios` / :func:`format_peer_ratio` - peer mode: the partner's row against each peer file's row;
* :func:`format_table` - the rows as a plain-text table;
* :func:`plot` - latency against input size, or mAP against latency, as a PNG (written atomically);
* :func:`environment` - versions and machine facts stored with the results.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import platform
from pathlib import Path
from typing import Any, Sequence

import torch

from ..runtime.timing import Row
from ..utils.io import atomic_outputs
from .backends import DEPLOY_BACKENDS, EAGER_BACKENDS, EAGER_BASELINE, ORT_BASELINE
from .peer_files import PeerFile, compared_backend

#: Packages whose versions are recorded when they are installed.
RECORDED_PACKAGES = ('onnxruntime', 'ncnn', 'onnx', 'mmdet', 'mmdeploy')


def _median_ms(r: Row) -> float:
    """The median latency of a measured row (``status == 'ok'``: :meth:`Row.set_stats` has run)."""
    assert r.median_ms is not None, f'{r.model} / {r.backend}: an ok row without latency statistics'
    return r.median_ms


def add_ratios(rows: Sequence[Row]) -> None:
    """Ratios to the torch-plain, ort-plain and ort-deploy rows of the same model, size and batch (in place)."""
    base: dict[tuple, dict[str, float]] = {}
    for r in rows:
        if r.status == 'ok' and r.backend in (EAGER_BASELINE, ORT_BASELINE, 'ort-deploy'):
            base.setdefault((r.model, r.size, r.batch), {})[r.backend] = _median_ms(r)
    for r in rows:
        b = base.get((r.model, r.size, r.batch), {})
        if r.status == 'ok':
            if EAGER_BASELINE in b:
                r.vs_torch_plain = _median_ms(r) / b[EAGER_BASELINE]
            if ORT_BASELINE in b:
                r.vs_ort_plain = _median_ms(r) / b[ORT_BASELINE]
            if 'ort-deploy' in b:
                r.vs_ort_deploy = _median_ms(r) / b['ort-deploy']


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
                best = min(cand, key=_median_ms)
                entry[key] = dict(backend=best.backend, median_ms=best.median_ms, ratio=getattr(best, ratio))
        out.append(entry)
    return out


def format_summary(summary: Sequence[dict[str, Any]]) -> str:
    """Human lines for :func:`summarize`."""
    lines = []
    for e in summary:
        head = f"{e['model']} {e['size'][0]}x{e['size'][1]} batch {e['batch']}:"
        parts = []
        for key, label, baseline in (('best_deploy', 'deploy', ORT_BASELINE),
                                     ('best_eager', 'PyTorch', EAGER_BASELINE)):
            if key in e:
                d = e[key]
                ratio = f"{d['ratio']:.2f}x {baseline}" if d['ratio'] is not None else f'no {baseline} row'
                parts.append(f"best {label} path {d['backend']} {d['median_ms']:.2f} ms = {ratio}")
        if parts:
            lines.append(head + ' ' + '; '.join(parts))
    return '\n'.join(lines)


#: (detector backend, bare backbone backend) pairs of :func:`backbone_ratios`.
VERSUS_BACKBONE = (('ort-raw', 'ort-deploy'), ('ncnn', 'ncnn'))


def backbone_ratios(rows: Sequence[Row], reference: str) -> list[dict[str, Any]]:
    """Every other model's ``ort-raw`` / ``ncnn`` row against the ``ort-deploy`` / ``ncnn`` row of the backbone
    ``reference`` (a model name of the run) at the same size and batch: how much a detector costs over its bare
    backbone (ncnn detector rows include the runner's numpy post-processing)."""
    ref = {(r.backend, r.size, r.batch): r for r in rows if r.model == reference and r.status == 'ok'}
    out = []
    for r in rows:
        if r.model == reference or r.status != 'ok':
            continue
        for det_backend, bb_backend in VERSUS_BACKBONE:
            base = ref.get((bb_backend, r.size, r.batch))
            if r.backend == det_backend and base is not None:
                out.append(dict(model=r.model, size=list(r.size), batch=r.batch, backend=r.backend,
                                median_ms=r.median_ms, reference=reference, reference_backend=bb_backend,
                                reference_ms=base.median_ms, ratio=_median_ms(r) / _median_ms(base)))
    return out


def peer_ratios(rows: Sequence[Row], peers: Sequence[PeerFile], partner: str, detector: bool
                ) -> list[dict[str, Any]]:
    """Per peer file and size: the ``partner`` model's compared row (:func:`.peer_files.compared_backend`; the
    network alone on both sides) against the peer's row, ``ratio`` = project median / peer median (below 1: the
    project's export is faster). Sizes where either row did not run get ``ratio`` None and the reason."""
    out = []
    for peer in peers:
        backend = compared_backend(peer.kind, detector)
        ours = {(r.size, r.batch): r for r in rows if r.model == partner and r.backend == backend}
        for r in rows:
            if r.model != peer.name or r.backend != peer.backend:
                continue
            base = ours.get((r.size, r.batch))
            entry: dict[str, Any] = dict(
                model=partner, backend=backend, size=list(r.size), batch=r.batch,
                median_ms=base.median_ms if base is not None else None, peer=peer.name, peer_kind=peer.kind,
                peer_backend=peer.backend, peer_file=str(peer.path), peer_ms=r.median_ms, ratio=None)
            if base is not None and base.status == 'ok' and r.status == 'ok':
                entry['ratio'] = _median_ms(base) / _median_ms(r)
            else:
                failed = [f'{x.model} {x.backend}: {x.status} ({x.note[:120]})' for x in (base, r)
                          if x is not None and x.status != 'ok']
                entry['reason'] = '; '.join(failed) or f'no {backend} row of {partner}'
            out.append(entry)
    return out


def format_peer_ratio(v: dict[str, Any]) -> str:
    """One line of :func:`peer_ratios`, e.g. ``lite-m 320x320: ort-raw / peer onnx = 0.87x (median 12.10 ms /
    13.90 ms, peer:nanodet-plus-m_320)``."""
    head = f"{v['model']} {v['size'][0]}x{v['size'][1]}: {v['backend']} / peer {v['peer_kind']}"
    if v['ratio'] is None:
        return f"{head}: no ratio - {v['reason']}"
    return (f"{head} = {v['ratio']:.2f}x (median {v['median_ms']:.2f} ms / {v['peer_ms']:.2f} ms, "
            f"{v['peer']} {v['peer_backend']})")


def _number(value: float | None, places: int = 2) -> str:
    return '-' if value is None else f'{value:.{places}f}'


def format_table(rows: Sequence[Row]) -> str:
    """A plain-text table of the rows (the note column last, unpadded)."""
    head = ['model', 'backend', 'size', 'batch', 'median ms', 'p90 ms', 'min ms', 'img/s', 'x torch-plain',
            'x ort-plain', 'x ort-deploy', 'note']
    lines = [[r.model, r.backend, f'{r.size[0]}x{r.size[1]}', str(r.batch), _number(r.median_ms),
              _number(r.p90_ms), _number(r.min_ms), _number(r.throughput, 1), _number(r.vs_torch_plain),
              _number(r.vs_ort_plain), _number(r.vs_ort_deploy),
              (r.status.upper() + ': ' if r.status != 'ok' else '') + r.note]
             for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(head)]
    widths[-1] = len(head[-1])

    def fmt(cells: Sequence[str]) -> str:
        return '  '.join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    return '\n'.join([fmt(head), fmt(['-' * w for w in widths])] + [fmt(line) for line in lines])


def plot(rows: Sequence[Row], path: str | os.PathLike, maps: dict[str, float] | None = None) -> Path:
    """Latency against input size per (model, backend); or, with ``maps`` ({model: mAP}), mAP against latency."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.status == 'ok']
    fig, ax = plt.subplots(figsize=(8, 5))
    if maps:
        for model, value in maps.items():
            for r in (r for r in ok if r.model == model):
                ax.scatter(_median_ms(r), value)
                ax.annotate(f'{model}\n{r.backend} {r.size[0]}', (_median_ms(r), value), fontsize=7)
        ax.set_xlabel('median latency (ms)')
        ax.set_ylabel('mAP')
        ax.set_title('accuracy vs latency')
    else:
        series: dict[tuple[str, str], list[Row]] = {}
        for r in ok:
            series.setdefault((r.model, r.backend), []).append(r)
        for (model, backend), pts in sorted(series.items()):
            pts.sort(key=lambda r: r.size[0] * r.size[1])
            ax.plot([f'{r.size[0]}x{r.size[1]}' for r in pts], [_median_ms(r) for r in pts], marker='o',
                    label=f'{model} / {backend}')
        ax.set_xlabel('input size')
        ax.set_ylabel('median latency (ms)')
        threads = ok[0].threads if ok else 1
        ax.set_title(f'latency vs input size (batch {ok[0].batch if ok else 1}, {threads} '
                     f'thread{"s" if threads != 1 else ""})')
        ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        with atomic_outputs([path], 'plot') as (tmp,):
            fig.savefig(tmp, format='png', dpi=120)
    finally:
        plt.close(fig)
    return Path(path)


#: The CPU features recorded with the results (``/proc/cpuinfo`` flag names): what the fp32 and int8 kernels use.
CPU_FLAGS = ('avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_tile', 'asimd', 'asimddp', 'sve')


def cpu_model(cpuinfo: str | None = None) -> dict[str, Any]:
    """The CPU's model name and which of :data:`CPU_FLAGS` it has, from the text of ``/proc/cpuinfo`` (read
    when ``cpuinfo`` is None; ``{}`` where there is none: not Linux, or unreadable). x86 names the model in
    ``model name`` and its features in ``flags``; Arm in ``Features`` (and the model, where the kernel gives one,
    in ``CPU model`` or ``Hardware``)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path('/proc/cpuinfo').read_text()
        except OSError:
            return {}
    text = cpuinfo
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(':')
        if not sep:
            if fields:
                break  # the first processor's block is enough
            continue
        fields.setdefault(key.strip().lower(), value.strip())
    flags = set((fields.get('flags') or fields.get('features') or '').split())
    name = fields.get('model name') or fields.get('cpu model') or fields.get('hardware')
    return dict(cpu_model=name, cpu_flags=[f for f in CPU_FLAGS if f in flags])


def environment() -> dict[str, Any]:
    """Versions and machine facts stored with the results (the CPU's model and features: :func:`cpu_model`)."""
    env: dict[str, Any] = dict(torch=torch.__version__, python=platform.python_version(),
                               machine=platform.machine(), processor=platform.processor() or None,
                               cpu_count=os.cpu_count(), cuda=torch.cuda.is_available(), **cpu_model())
    try:
        env['loadavg_1m'] = os.getloadavg()[0]
    except (OSError, AttributeError):  # no load average on this platform
        pass
    for mod in RECORDED_PACKAGES:
        if importlib.util.find_spec(mod) is not None:
            try:
                env[mod] = importlib.import_module(mod).__version__
            except Exception:  # an installed package that does not import is recorded as such
                env[mod] = 'unknown'
    if torch.cuda.is_available():
        env['gpu'] = torch.cuda.get_device_name()
    return env
