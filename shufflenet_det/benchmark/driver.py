"""The benchmark run: every (model, input size, backend) measured in one process, on one machine.

Every row of a run is measured with the same input and thread count, and the in-process backends of every model at
one input size are timed in the same rounds (a block of consecutive calls of each per round,
:func:`.timing.time_in_rounds`), so a load change on a shared machine affects all of them alike and the ratios between
rows - between models too - stay meaningful even when the absolute numbers are noisy; every block starts with
untimed calls, so the worker threads another runtime leaves spinning are not charged to the next one. Backends are
prepared by the builders of :data:`.backends.BACKENDS`; one that cannot run here becomes a row with the reason.
Rows timed in a child process (ncnn) are measured when their backend is prepared, outside the rounds.

Peer mode (:mod:`.peer_files`): the peer files are timed next to one model of the run, their partner - an ONNX
peer in the partner's rounds with the session of its ``ort-deploy`` / ``ort-raw`` rows, an ncnn peer in the child
process of its ``ncnn`` row, interleaved with it - and the partner runs the backends of the rows they are compared
with (added when missing).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence, cast

import torch
from torch import nn

from ..runtime.timing import Row, time_in_rounds
from ..utils.predict import is_detector
from .backends import ALL_BACKENDS, BACKENDS, GPU_BACKENDS, Subject, Unavailable, make_input, ort_peer
from .peer_files import PeerFile, required_backend
from .report import add_ratios


def _error_note(exc: BaseException) -> str:
    return f'{type(exc).__name__}: {str(exc)[:300]}'


def _pair(size: Sequence[int]) -> tuple[int, int]:
    """``size`` (a pair, maybe a list) as a tuple."""
    return cast('tuple[int, int]', tuple(size))


def _progress_bar(total: int) -> Any:
    """A tqdm bar over ``total`` calls, or None without tqdm."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit='run', leave=False, dynamic_ncols=True)


def _with_peer_backends(backends: Sequence[str], model: nn.Module, peers: Sequence[PeerFile]) -> list[str]:
    """``backends`` and, at the end, the backends of the rows the ``peers`` are compared with, when missing."""
    out = list(backends)
    for peer in peers:
        needed = required_backend(peer.kind, is_detector(model))
        if needed not in out:
            out.append(needed)
    return out


def prepare_subject(subject: Subject, size: tuple[int, int], backends: Sequence[str], runs: int, warmup: int,
                    bar: Any = None) -> tuple[list[Row], list[tuple[Row, Callable[[], Any]]]]:
    """One row per backend for one model at one input size, and the (row, callable) pairs still to be timed.

    Backends measured elsewhere (ncnn, in a child process) and unavailable ones are complete rows already.
    """
    rows: list[Row] = []
    group: list[tuple[Row, Callable[[], Any]]] = []
    for backend in backends:
        row = Row(subject.name, backend, size, subject.batch, subject.threads)
        rows.append(row)
        if bar is not None:
            bar.set_description(f'{subject.name[:24]} {backend} {size[0]}x{size[1]} (build)')
        peer = subject.ncnn_peer if backend == 'ncnn' else None
        try:
            prepared = BACKENDS[backend](subject)
        except Unavailable as exc:
            row.fail('unavailable', str(exc))
        except Exception as exc:  # one failing backend must not lose the others
            row.fail('error', _error_note(exc))
        else:
            row.note = prepared.note
            for extra in prepared.extra:  # measured with this row (ncnn with a peer)
                rows.append(Row(extra.model, extra.backend, size, subject.batch, subject.threads, note=extra.note))
                rows[-1].set_stats(extra.stats)
            if prepared.fn is not None:
                group.append((row, prepared.fn))
                continue
            assert prepared.stats is not None  # a Prepared holds a callable or its statistics
            row.set_stats(prepared.stats)  # measured by the builder itself (ncnn: in a child process)
        if peer is not None and row.status != 'ok':  # the peer is timed by the partner's ncnn child only
            rows.append(Row(peer.name, peer.backend, size, subject.batch, subject.threads, row.status,
                            f'not timed: the ncnn row of {subject.name} failed ({row.note})'))
        if bar is not None:
            bar.update(runs + warmup)
    return rows, group


def prepare_onnx_peers(subject: Subject, size: tuple[int, int], peers: Sequence[PeerFile]
                       ) -> tuple[list[Row], list[tuple[Row, Callable[[], Any]]]]:
    """The rows of the ONNX peers of ``subject`` (their partner) and their callables, to be timed in its rounds."""
    rows: list[Row] = []
    group: list[tuple[Row, Callable[[], Any]]] = []
    for peer in peers:
        if peer.kind != 'onnx':
            continue
        row = Row(peer.name, peer.backend, size, subject.batch, subject.threads)
        rows.append(row)
        try:
            prepared = ort_peer(subject, peer)
        except Exception as exc:  # one failing peer must not lose the other rows
            row.fail('error', _error_note(exc))
        else:
            row.note = prepared.note
            assert prepared.fn is not None  # timed here, in the rounds
            group.append((row, prepared.fn))
    return rows, group


def time_group(group: Sequence[tuple[Row, Callable[[], Any]]], runs: int, warmup: int, rounds: int = 5,
               bar: Any = None) -> None:
    """Time the callables of ``group`` together in rounds (:func:`.timing.time_in_rounds`); fill in their rows."""
    if bar is not None:
        bar.set_description(f'timing {len(group)} rows in rounds')
    timed = time_in_rounds([fn for _, fn in group], runs, warmup, bar, rounds=rounds)
    for (row, _), stats in zip(group, timed):
        if isinstance(stats, Exception):
            row.fail('error', _error_note(stats))
        else:
            row.set_stats(stats)


def measure_subject(subject: Subject, size: tuple[int, int], backends: Sequence[str], runs: int, warmup: int,
                    rounds: int = 5, bar: Any = None) -> list[Row]:
    """One row per backend for one model at one input size; the in-process backends timed together in rounds."""
    rows, group = prepare_subject(subject, size, backends, runs, warmup, bar)
    time_group(group, runs, warmup, rounds, bar)
    return rows


def run_benchmark(models: Sequence[tuple[str, nn.Module]], sizes: Sequence[tuple[int, int]], backends: Sequence[str],
                  batch: int = 1, threads: int = 2, runs: int = 50, warmup: int = 10,
                  peers: Sequence[tuple[str, Callable[[], nn.Module]]] = (),
                  peer_backends: Sequence[str] = ('torch-plain', 'torch-cl'),
                  images: Sequence[torch.Tensor] | None = None, progress: bool = True,
                  log: Callable[[str], None] = print, rounds: int = 5, peer_files: Sequence[PeerFile] = (),
                  peer_partner: str | None = None) -> list[Row]:
    """Measure every (model, size, backend); unavailable backends become rows with a reason.

    ``models`` are (name, model) pairs timed with ``backends``; ``peers`` are (name, builder) pairs of other
    projects' models (:func:`.backends.peer_models`), timed with ``peer_backends`` or listed as unavailable.
    ``images`` (normalised (1, 3, H, W) tensors) replace the random input. The in-process backends of every model
    at one size are timed together in ``rounds`` rounds (:func:`.timing.time_in_rounds`); the ``ncnn`` rows are
    timed by the torch-free runtime in a child process (:func:`.backends.ncnn`). ``peer_files`` (checked by
    :mod:`.peer_files`; at most one ncnn peer) are timed next to the model named ``peer_partner`` (default: the
    last of ``models``), which also runs the backends of the rows they are compared with
    (:func:`.peer_files.required_backend`). Returns the rows, with their ratios to the baselines.
    """
    unknown = [b for b in (*backends, *peer_backends) if b not in BACKENDS]
    if unknown:
        raise ValueError(f'unknown backends {unknown}; available: {list(ALL_BACKENDS)}')
    if batch < 1 or threads < 1 or runs < 1 or warmup < 0 or rounds < 1:
        raise ValueError(f'batch, threads, runs and rounds must be >= 1 and warmup >= 0 (got batch={batch}, '
                         f'threads={threads}, runs={runs}, rounds={rounds}, warmup={warmup})')
    partner = peer_partner if peer_partner is not None else (models[-1][0] if models and peer_files else None)
    if peer_files and partner not in [name for name, _ in models]:
        raise ValueError(f'peer_partner {partner!r} is not one of the models {[name for name, _ in models]}')
    if sum(p.kind == 'ncnn' for p in peer_files) > 1:
        raise ValueError('at most one ncnn peer: it is timed in the child process of its partner\'s ncnn row')
    torch.set_num_threads(threads)
    os.environ.setdefault('OMP_NUM_THREADS', str(threads))
    calls = (runs + warmup) * len(sizes)
    peer_extra = sum(len(_with_peer_backends(backends, model, peer_files)) - len(backends) for name, model in models
                     if name == partner) + sum(p.kind == 'onnx' for p in peer_files)
    bar = _progress_bar(calls * (len(models) * len(backends) + len(peers) * len(peer_backends) + peer_extra)) \
        if progress else None
    if any(b in GPU_BACKENDS for b in backends) and not torch.cuda.is_available():
        log('[benchmark] no CUDA device: the GPU rows (ort-cuda, cuda-fp32, cuda-fp16) are skipped')
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix='shufflenet_det_bench_') as tmp:
        jobs = [(name, model, _with_peer_backends(backends, model, peer_files) if name == partner else backends)
                for name, model in models]
        for peer_name, builder in peers:
            try:
                jobs.append((peer_name, builder(), peer_backends))
            except Unavailable as exc:
                rows += [Row(peer_name, '-', _pair(size), batch, threads, 'unavailable', str(exc)) for size in sizes]
                if bar is not None:
                    bar.update(calls * len(peer_backends))
        # every model of one input size is timed in the same rounds, so that the ratios *between models* (e.g. a
        # detector against its bare backbone) see the same load too; rows are listed model by model
        measured: dict[tuple[int, int], list[Row]] = {}
        for s_idx, size in enumerate(sizes):
            group: list[tuple[Row, Callable[[], Any]]] = []
            for m_idx, (name, model, model_backends) in enumerate(jobs):
                workdir = Path(tmp) / f'{m_idx}_{size[0]}x{size[1]}'
                workdir.mkdir()
                model.eval()  # not chained: some projects' train() overrides return None
                subject = Subject(name, model, make_input(size, batch, images), threads, workdir, runs=runs,
                                  warmup=warmup, rounds=rounds)
                if name == partner:
                    subject.ncnn_peer = next((p for p in peer_files if p.kind == 'ncnn'), None)
                measured[m_idx, s_idx], pending = prepare_subject(subject, _pair(size), model_backends, runs,
                                                                   warmup, bar)
                group += pending
                if name == partner:
                    peer_rows, pending = prepare_onnx_peers(subject, _pair(size), peer_files)
                    measured[m_idx, s_idx] += peer_rows
                    group += pending
            time_group(group, runs, warmup, rounds, bar)
        rows += [r for m_idx in range(len(jobs)) for s_idx in range(len(sizes)) for r in measured[m_idx, s_idx]]
    if bar is not None:
        bar.close()
    add_ratios(rows)
    return rows
