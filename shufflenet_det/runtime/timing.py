"""Timing: the measured rows and the round-robin timing harness of the benchmark.

* :class:`Row` - one (model, backend, input size) configuration: its status, latency statistics and ratios;
* :func:`latency_stats` - median, p90, min and mean of a list of call times;
* :func:`time_calls` - one callable timed alone (the board runners' ``--bench``);
* :func:`time_in_rounds` - several callables timed in rounds of consecutive, re-warmed blocks (the benchmark);
* :data:`KINDS` and :func:`conv_floor` - the kinds the profiles group their time into (ncnn layers,
  :mod:`.ncnn_profile`; ONNX Runtime operators, ``benchmark.ort_profile``) and the floor they compute from them;
  :func:`compare_with_first` - their comparison of the first model with the others.
"""
from __future__ import annotations

import dataclasses
import os
import statistics
import time
from typing import Any, Callable, Sequence

import numpy as np

#: The latency statistics of a row, in milliseconds.
STAT_KEYS = ('median_ms', 'p90_ms', 'min_ms', 'mean_ms')
#: The kinds of work the profiles split a model's time into.
KINDS = ('convolution', 'data movement', 'other')


def conv_floor(model_ms: float, conv_ms: float, profiled_ms: float, peer_ms: float) -> float:
    """The ratio model / peer of two models' times with everything of the model outside its convolutions removed:
    the model's time ``model_ms`` times its convolutions' share ``conv_ms / profiled_ms`` of its profiled time, over
    the peer's time ``peer_ms``. The floor of any rewrite that keeps the model's convolutions as they run."""
    return model_ms * (conv_ms / profiled_ms if profiled_ms > 0 else 0.0) / peer_ms


def compare_with_first(paths: Sequence[str], times_ms: Sequence[float],
                       floors: Sequence[float]) -> list[dict[str, Any]]:
    """The first of several profiled models against each other one: one printed line each (ratio of the median
    times, and ``floors[i - 1]``, its :func:`conv_floor` against model ``i``), and the same as JSON rows."""
    rows = []
    for path, ms, floor in zip(paths[1:], times_ms[1:], floors):
        ratio = times_ms[0] / ms
        rows.append(dict(model=paths[0], peer=path, ratio=ratio, conv_floor=floor))
        print(f'{os.path.basename(paths[0])} / {os.path.basename(path)}: {ratio:.2f}x (median {times_ms[0]:.3f} / '
              f'{ms:.3f} ms); with only its convolutions: {floor:.2f}x')
    return rows


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
    vs_ort_deploy: float | None = None  # e.g. ort-int8 against the float deploy export it was quantized from

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON-ready values (``size`` as a list)."""
        d = dataclasses.asdict(self)
        d['size'] = list(self.size)
        return d

    def set_stats(self, stats: dict[str, float]) -> None:
        """Store latency statistics (:data:`STAT_KEYS`) and the throughput at the median latency."""
        for key in STAT_KEYS:
            setattr(self, key, stats[key])
        self.throughput = self.batch * 1e3 / stats['median_ms']

    def fail(self, status: str, note: str) -> None:
        """Mark the row ``unavailable`` or ``error`` with the reason."""
        self.status, self.note = status, note


def latency_stats(times: Sequence[float]) -> dict[str, float]:
    """Median, 90th percentile, minimum and mean of call times in milliseconds."""
    ordered = sorted(times)
    return dict(median_ms=statistics.median(ordered), p90_ms=float(np.percentile(ordered, 90)),
                min_ms=ordered[0], mean_ms=statistics.fmean(ordered))


def time_calls(fn: Callable[[], Any], runs: int, warmup: int) -> dict[str, Any]:
    """``fn()`` called ``warmup`` times untimed, then ``runs`` >= 1 times timed: :func:`latency_stats` in
    milliseconds plus ``runs`` and ``warmup``."""
    if runs < 1 or warmup < 0:
        raise ValueError(f'runs must be >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}')
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return dict(latency_stats(times), runs=runs, warmup=warmup)


def time_in_rounds(fns: Sequence[Callable[[], Any]], runs: int, warmup: int, progress: Any = None,
                   rounds: int = 5) -> list[dict[str, float] | Exception]:
    """Time several callables in ``rounds`` rounds of consecutive calls each, re-warmed at every switch.

    Every callable gets ``runs`` timed calls in all, split over the rounds (so a load change on a shared machine
    hits all of them alike), and before each of its blocks ``max(3, warmup // rounds)`` untimed calls. The blocks
    matter: runtimes keep their worker threads spinning for a while after a call (ONNX Runtime's intra-op pool,
    OpenMP), so timing A right after B charges A for B's spinning threads. Measured here with two ONNX Runtime
    sessions in one process: alternating every 10 calls gave a p90 near 7 ms for a 2.2 ms model, blocks of 250
    gave p90 within 6% of the median, and the same figures as each session in a process of its own.
    ``progress`` (a tqdm bar, optional) is advanced by the number of calls made. Returns latency statistics per
    callable in milliseconds (:func:`latency_stats`), or the exception it raised.
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
            except Exception as exc:  # any failure is reported in its row; the others go on
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
    return [failed[i] if i in failed else latency_stats(ts) for i, ts in enumerate(times)]
