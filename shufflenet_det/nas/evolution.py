"""Evolutionary architecture search of Single Path One-Shot NAS (Guo et al., arXiv 1904.00420), as DetNAS (Chen et
al., arXiv 1903.10979) applies it to detection backbones.

A generation evaluates its population (each path scored once: results are cached by encoding), keeps the ``top_k``
best paths seen so far (higher score first; ties: fewer multiply-adds, then the encoding) and breeds the next
population from them:

* ``num_mutation`` mutations: a random top-k parent, each unit's choice redrawn uniformly with ``mutation_prob``;
* ``num_crossover`` crossovers: two distinct random top-k parents, each unit's choice taken from either with
  probability 1/2;
* random paths (uniform sampling) up to ``population_size``; the first population is random only.

Every new path must satisfy the multiply-add budget (``flops_min <= flops <= flops_limit``) and be new (neither
scored before nor already in the population); each kind gets ``max_tries`` draws per wanted path, so a tight budget
or an exhausted small space gives a smaller population rather than an endless loop.

The whole search is a :class:`SearchState` (JSON-ready, numpy generator state included): saving it after each
generation and loading it again continues the identical search.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from ..models.backbones.detnas_supernet import SearchSpace

Path = tuple[int, ...]
#: ``path -> dict(score=float, metrics=dict)``: how a candidate is scored (e.g. COCO mAP after BN recalibration).
ScoreFn = Callable[[Path], Mapping[str, Any]]
#: ``path -> multiply-adds``.
FlopsFn = Callable[[Path], int]


def path_key(path: Sequence[int]) -> str:
    """The encoding as a string of choice ids, e.g. ``'21202112331300313132'`` (the dictionary key of a path)."""
    return ''.join(str(int(c)) for c in path)


def key_path(key: str) -> Path:
    """Inverse of :func:`path_key`."""
    return tuple(int(c) for c in key)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f'{name}={value!r} must be an int >= {minimum}')
    return value


@dataclass(frozen=True)
class EvolutionSettings:
    """Settings of the evolution (defaults: the SPOS search - population 50, top 10, 25 mutations with probability
    0.1, 25 crossovers, 20 generations).

    ``flops_limit`` / ``flops_min``: the multiply-add budget a path must satisfy (``None``: unbounded).
    """

    population_size: int = 50
    top_k: int = 10
    num_mutation: int = 25
    num_crossover: int = 25
    mutation_prob: float = 0.1
    generations: int = 20
    max_tries: int = 10
    seed: int = 0
    flops_limit: Optional[float] = None
    flops_min: Optional[float] = None

    def __post_init__(self) -> None:
        _check_int('population_size', self.population_size, 1)
        _check_int('top_k', self.top_k, 1)
        _check_int('num_mutation', self.num_mutation, 0)
        _check_int('num_crossover', self.num_crossover, 0)
        _check_int('generations', self.generations, 1)
        _check_int('max_tries', self.max_tries, 1)
        _check_int('seed', self.seed, 0)
        if self.num_mutation + self.num_crossover > self.population_size:
            raise ValueError(f'num_mutation + num_crossover = {self.num_mutation + self.num_crossover} must be at most '
                             f'population_size={self.population_size} (random paths fill the rest)')
        if self.num_crossover and self.top_k < 2:
            raise ValueError(f'num_crossover={self.num_crossover} needs top_k >= 2 (two distinct parents), got '
                             f'top_k={self.top_k}')
        if (not isinstance(self.mutation_prob, (int, float)) or isinstance(self.mutation_prob, bool)
                or not 0.0 < self.mutation_prob <= 1.0):
            raise ValueError(f'mutation_prob={self.mutation_prob!r} must be a number in (0, 1]')
        for name in ('flops_limit', 'flops_min'):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                      or not math.isfinite(value) or value <= 0):
                raise ValueError(f'{name}={value!r} must be None or a positive number of multiply-adds')
        if self.flops_limit is not None and self.flops_min is not None and self.flops_min > self.flops_limit:
            raise ValueError(f'flops_min={self.flops_min} must be at most flops_limit={self.flops_limit}')

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = 'settings') -> EvolutionSettings:
        """Settings from a dict; ValueError naming unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f'{where}: unknown evolution settings {unknown}; allowed: {sorted(known)}')
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SearchState:
    """Everything a search needs to continue (JSON-ready through :meth:`to_dict` / :meth:`from_dict`).

    ``generation``: generations completed; ``population``: the paths generation ``generation`` evaluates (bred
    already); ``candidates``: key -> record (``path``, ``flops``, ``score``, ``metrics``, ``generation``, ``origin``,
    ``seconds``) of every scored path in scoring order; ``top_k``: keys, best first; ``flops``: the multiply-adds of
    every path counted (rejected ones included); ``rng``: the numpy generator state; ``history``: one summary per
    generation.
    """

    generation: int = 0
    population: list[list[int]] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)
    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)
    top_k: list[str] = field(default_factory=list)
    flops: dict[str, int] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchState:
        known = {f.name for f in fields(cls)}
        if not isinstance(data, Mapping) or set(data) != known:
            raise ValueError(f'not a search state: expected the keys {sorted(known)}')
        return cls(**{k: data[k] for k in known})

    def check(self, space: SearchSpace) -> SearchState:
        """Return the state if every field has the type and range a search writes (paths of ``space``); ValueError
        naming the field otherwise (a state file edited by hand, or of another search space)."""
        def is_int(value: Any, minimum: int = 0) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= minimum

        def check_path(path: Any, name: str) -> None:
            if not isinstance(path, list) or not all(is_int(c) for c in path):
                raise ValueError(f'{name}={path!r} must be a list of block choice ids')
            space.check_path(path, name)

        if not is_int(self.generation):
            raise ValueError(f'generation={self.generation!r} must be an int >= 0 (generations completed)')
        if not isinstance(self.population, list) or not isinstance(self.origins, list) \
                or len(self.origins) != len(self.population):
            raise ValueError('population and origins must be lists of the same length')
        for i, (path, origin) in enumerate(zip(self.population, self.origins)):
            check_path(path, f'population[{i}]')
            if origin not in ('mutation', 'crossover', 'random'):
                raise ValueError(f"origins[{i}]={origin!r} must be 'mutation', 'crossover' or 'random'")
        if not isinstance(self.candidates, dict):
            raise ValueError('candidates must be a dict of encoding -> record')
        for key, rec in self.candidates.items():
            if not isinstance(rec, dict) or not {'path', 'flops', 'score'} <= set(rec):
                raise ValueError(f'candidates[{key!r}] must be a record with path, flops and score')
            check_path(rec['path'], f'candidates[{key!r}].path')
            if path_key(rec['path']) != key or not is_int(rec['flops']) \
                    or not isinstance(rec['score'], (int, float)) or isinstance(rec['score'], bool):
                raise ValueError(f'candidates[{key!r}] must hold the path {key!r}, an int flops and a number score')
        if not isinstance(self.top_k, list) or any(k not in self.candidates for k in self.top_k):
            raise ValueError(f'top_k={self.top_k!r} must list keys of candidates')
        if not isinstance(self.flops, dict) or not all(is_int(v) for v in self.flops.values()):
            raise ValueError('flops must be a dict of encoding -> int multiply-adds')
        if not isinstance(self.history, list):
            raise ValueError('history must be a list')
        try:
            np.random.default_rng().bit_generator.state = self.rng
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f'rng is not a numpy generator state ({exc})') from None
        return self


class EvolutionarySearch:
    """The SPOS evolution over a :class:`SearchSpace` (see module docstring).

    Args:
        space: the search space.
        settings: population, top-k, mutation / crossover, budget, seed.
        flops_fn: multiply-adds of a path (called once per path; the state caches the result).
        score_fn: ``path -> dict(score=..., metrics=...)``; higher scores are better.
    """

    def __init__(self, space: SearchSpace, settings: EvolutionSettings, flops_fn: FlopsFn, score_fn: ScoreFn) -> None:
        self.space = space
        self.settings = settings
        self.flops_fn = flops_fn
        self.score_fn = score_fn

    # ------------------------------------------------------------------ budget
    def path_flops(self, state: SearchState, path: Sequence[int]) -> int:
        """Multiply-adds of ``path`` (counted once, then read from ``state.flops``)."""
        key = path_key(path)
        if key not in state.flops:
            state.flops[key] = int(self.flops_fn(tuple(path)))
        return state.flops[key]

    def within_budget(self, flops: float) -> bool:
        s = self.settings
        return (s.flops_limit is None or flops <= s.flops_limit) and (s.flops_min is None or flops >= s.flops_min)

    # ------------------------------------------------------------------ breeding
    def _accept(self, state: SearchState, path: Path, taken: set[str]) -> bool:
        key = path_key(path)
        if key in taken or key in state.candidates:
            return False
        if not self.within_budget(self.path_flops(state, path)):
            return False
        taken.add(key)
        return True

    def mutate(self, rng: np.random.Generator, parent: Sequence[int]) -> Path:
        """``parent`` with each unit's choice redrawn uniformly with probability ``mutation_prob``."""
        redraw = rng.random(len(parent)) < self.settings.mutation_prob
        new = rng.integers(0, self.space.num_choices, size=len(parent))
        return tuple(int(n) if r else int(p) for p, r, n in zip(parent, redraw, new))

    @staticmethod
    def crossover(rng: np.random.Generator, a: Sequence[int], b: Sequence[int]) -> Path:
        """Each unit's choice from ``a`` or ``b`` with probability 1/2."""
        take_a = rng.random(len(a)) < 0.5
        return tuple(int(x) if t else int(y) for x, y, t in zip(a, b, take_a))

    def _breed(self, state: SearchState, rng: np.random.Generator, kind: str, wanted: int,
               taken: set[str]) -> list[Path]:
        found: list[Path] = []
        parents = [key_path(k) for k in state.top_k]
        if wanted <= 0 or (kind == 'mutation' and not parents) or (kind == 'crossover' and len(parents) < 2):
            return found
        for _ in range(wanted * self.settings.max_tries):
            if len(found) >= wanted:
                break
            if kind == 'mutation':
                child = self.mutate(rng, parents[int(rng.integers(len(parents)))])
            elif kind == 'crossover':
                i, j = rng.choice(len(parents), size=2, replace=False)
                child = self.crossover(rng, parents[int(i)], parents[int(j)])
            else:
                child = self.space.sample(rng)
            if self._accept(state, child, taken):
                found.append(child)
        return found

    def _next_population(self, state: SearchState, rng: np.random.Generator) -> None:
        s = self.settings
        taken: set[str] = set()
        population: list[Path] = []
        origins: list[str] = []
        for kind, wanted in (('mutation', s.num_mutation), ('crossover', s.num_crossover)):
            bred = self._breed(state, rng, kind, wanted, taken) if state.top_k else []
            population += bred
            origins += [kind] * len(bred)
        bred = self._breed(state, rng, 'random', s.population_size - len(population), taken)
        population += bred
        origins += ['random'] * len(bred)
        state.population = [list(p) for p in population]
        state.origins = origins

    # ------------------------------------------------------------------ the search
    def initial_state(self) -> SearchState:
        """Generation 0: a random population within the budget."""
        state = SearchState()
        rng = np.random.default_rng(self.settings.seed)
        self._next_population(state, rng)
        state.rng = dict(rng.bit_generator.state)  # a dict at run time; numpy types it as a Mapping
        return state

    def _rank(self, state: SearchState, keys: set[str]) -> list[str]:
        def order(key: str) -> tuple:
            rec = state.candidates[key]
            return (-float(rec['score']), int(rec['flops']), key)
        return sorted(keys, key=order)[:self.settings.top_k]

    def step(self, state: SearchState,
             on_candidate: Optional[Callable[[int, int, dict[str, Any]], None]] = None) -> SearchState:
        """Run generation ``state.generation``: score its population, update the top-k, breed the next population.

        ``on_candidate(index, total, record)`` is called after each scored path (progress display). The state is
        changed in place and returned.
        """
        gen = state.generation
        total = len(state.population)
        for index, (path, origin) in enumerate(zip(state.population, state.origins)):
            key = path_key(path)
            if key not in state.candidates:
                start = time.perf_counter()
                result = dict(self.score_fn(tuple(path)))
                state.candidates[key] = dict(
                    path=list(path), flops=self.path_flops(state, path), score=float(result['score']),
                    metrics=dict(result.get('metrics') or {}), generation=gen, origin=origin,
                    seconds=round(time.perf_counter() - start, 3))
            if on_candidate is not None:
                on_candidate(index, total, state.candidates[key])
        state.top_k = self._rank(state, set(state.top_k) | {path_key(p) for p in state.population})
        scores = [state.candidates[path_key(p)]['score'] for p in state.population]
        best = state.candidates[state.top_k[0]] if state.top_k else None
        state.history.append(dict(
            generation=gen, population=total, origins={k: state.origins.count(k) for k in sorted(set(state.origins))},
            mean_score=float(np.mean(scores)) if scores else None, max_score=max(scores) if scores else None,
            best_key=state.top_k[0] if state.top_k else None, best_score=best['score'] if best else None,
            best_flops=best['flops'] if best else None, top_k=list(state.top_k)))
        rng = np.random.default_rng()
        rng.bit_generator.state = state.rng
        self._next_population(state, rng)
        state.rng = dict(rng.bit_generator.state)  # a dict at run time; numpy types it as a Mapping
        state.generation = gen + 1
        return state

    def run(self, state: Optional[SearchState] = None,
            on_generation: Optional[Callable[[SearchState], None]] = None) -> SearchState:
        """Run (or continue) the search until ``settings.generations`` generations are done."""
        state = state or self.initial_state()
        while state.generation < self.settings.generations:
            self.step(state)
            if on_generation is not None:
                on_generation(state)
        return state
