"""Evolutionary search for the scheme with the largest summed contribution under a budget.

A genome is (k, r_i for each weight layer i of the space, 0 = frozen). Its score is the
paper's objective, ΔAcc_b[k] + Σ_i ΔAcc_{W_i, r_i}, from the contribution analysis, where
a gain smaller than `min_gain` counts as 0: the runs measure accuracy on a few hundred
images, so a +1 point "gain" is noise, and summing a dozen of them bought memory for
layers that did not help (on MCUNet-5fps at 100 KB: 86.4 +- 11.8 % after real training,
against 95.9 % for the paper's 99kb scheme). The default `min_gain` is one standard error
of a difference of two runs' accuracies (`Analysis.standard_error`, 2.9 points for 500
images at 70 %). Among equal scores the smaller memory wins. Its memory is what the
generated C needs:
- trained params (SRAM): the classifier-only run's bytes plus, for each choice, what its
  own run added over that (exact: every param's SRAM bytes are its own, so they add);
- arena: the largest arena of the runs of its choices (an estimate: saved activations of
  several trained layers may overlap in time).
The budget bounds the total (arena + trained params + stack) and/or the update memory
(arena + trained params - the inference arena: what training adds to the deployed model).

The best genome is then compiled and its memory measured by the real pipeline and C
emitter; if that breaks the budget, the measured figure replaces the estimate for that
genome and the search runs again, until the winner's measured memory fits. So the scheme
returned is always within budget by the real planner, never by the estimate alone.

Selection is by tournament, crossover uniform, mutation resamples genes; the best
`elite` genomes survive; each winner is hill-climbed by one- and two-gene moves; the best of `restarts`
independent populations is taken. All randomness comes from `seed`: the same inputs give the
same scheme.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tinymlir.search.contribution import Analysis
from tinymlir.search.space import SearchSpace, scheme_text


class BudgetError(ValueError):
    """No scheme of the space fits the budget (one line)."""


@dataclass(frozen=True)
class Budget:
    total: int | None = None   # arena + trained params + stack
    update: int | None = None  # arena + trained params - inference arena
    stack: int = 2048

    def describe(self) -> str:
        parts = []
        if self.total is not None:
            parts.append(f"total SRAM <= {self.total:,} B (stack {self.stack:,} B included)")
        if self.update is not None:
            parts.append(f"update memory <= {self.update:,} B")
        return " and ".join(parts)


@dataclass(frozen=True)
class Memory:
    arena_bytes: int
    trainable_bytes: int

    def update(self, inference_arena: int) -> int:
        return self.arena_bytes + self.trainable_bytes - inference_arena


@dataclass
class SearchResult:
    scheme: str
    bias_last: int
    weights: dict[int, float]
    score: float            # summed Δaccuracy (fraction)
    memory: Memory          # measured by the real pipeline
    inference_arena: int
    verifications: int      # schemes measured by the real pipeline
    evaluations: int        # genomes scored


Genome = tuple[int, ...]  # (index into bias_grid, then per weight layer 0 = frozen or 1 + index into ratios)


class Searcher:
    def __init__(self, space: SearchSpace, analysis: Analysis, budget: Budget,
                 measure: Callable[[str], Memory], seed: int = 0, population: int = 64,
                 generations: int = 60, elite: int = 8, min_gain: float | None = None,
                 log: Callable[[str], None] = lambda s: None) -> None:
        self.space, self.analysis, self.budget = space, analysis, budget
        self.min_gain = analysis.standard_error() if min_gain is None else min_gain

        def gain(delta: float) -> float:
            return delta if delta >= self.min_gain else 0.0

        self.measure, self.seed, self.log = measure, seed, log
        self.population, self.generations, self.elite = population, generations, elite
        self.measured: dict[Genome, Memory] = {}
        self.evaluations = 0
        base = analysis.baseline.trainable_bytes
        self._score_bias = np.array([gain(analysis.delta_bias(k)) for k in space.bias_grid])
        self._score_w = [[0.0] + [gain(analysis.delta_weight(i, r)) for r in space.ratios] for i in space.weight_layers]
        self._train_bias = [analysis.bias[k].trainable_bytes - base for k in space.bias_grid]
        self._train_w = [[0] + [analysis.weights[(i, r)].trainable_bytes - base for r in space.ratios]
                         for i in space.weight_layers]
        self._arena_bias = [analysis.bias[k].arena_bytes for k in space.bias_grid]
        self._arena_w = [[0] + [analysis.weights[(i, r)].arena_bytes for r in space.ratios]
                         for i in space.weight_layers]

    # -- genome -> scheme, score, memory ---------------------------------------------------
    def decode(self, g: Genome) -> tuple[int, dict[int, float]]:
        weights = {i: self.space.ratios[v - 1] for i, v in zip(self.space.weight_layers, g[1:]) if v}
        return self.space.bias_grid[g[0]], weights

    def score(self, g: Genome) -> float:
        return float(self._score_bias[g[0]] + sum(self._score_w[j][v] for j, v in enumerate(g[1:])))

    def estimate(self, g: Genome) -> Memory:
        if g in self.measured:
            return self.measured[g]
        trained = self.analysis.baseline.trainable_bytes + self._train_bias[g[0]]
        trained += sum(self._train_w[j][v] for j, v in enumerate(g[1:]))
        arena = max([self.analysis.baseline.arena_bytes, self._arena_bias[g[0]]]
                    + [self._arena_w[j][v] for j, v in enumerate(g[1:]) if v])
        return Memory(arena, trained)

    def overflow(self, m: Memory) -> int:
        """Bytes over the budget (0: fits)."""
        over = 0
        if self.budget.total is not None:
            over = max(over, m.arena_bytes + m.trainable_bytes + self.budget.stack - self.budget.total)
        if self.budget.update is not None:
            over = max(over, m.update(self.analysis.inference_arena) - self.budget.update)
        return over

    def fitness(self, g: Genome) -> float:
        self.evaluations += 1
        m = self.estimate(g)
        over = self.overflow(m)
        # among equal scores, less memory (1e-12 per byte: below any score difference)
        return self.score(g) - 1e-12 * (m.arena_bytes + m.trainable_bytes) if over == 0 else -1.0 - over / 1e6

    # -- the search --------------------------------------------------------------------
    def evolve(self, rng: np.random.Generator) -> Genome:
        n_bias, n_r = len(self.space.bias_grid), len(self.space.ratios) + 1
        n_w = len(self.space.weight_layers)

        def random_genome() -> Genome:
            # sparse starts: each weight layer trains with probability 1/4
            w = [int(rng.integers(1, n_r)) if rng.random() < 0.25 else 0 for _ in range(n_w)]
            return (int(rng.integers(n_bias)), *w)

        pop = [(0,) * (n_w + 1)] + [random_genome() for _ in range(self.population - 1)]
        cache: dict[Genome, float] = {}

        def fit(g: Genome) -> float:
            if g not in cache:
                cache[g] = self.fitness(g)
            return cache[g]

        p_mut = 1.0 / (n_w + 1)
        for _ in range(self.generations):
            ranked = sorted(pop, key=lambda g: (-fit(g), g))
            nxt = ranked[: self.elite]
            while len(nxt) < self.population:
                a, b = (min(rng.choice(len(ranked), 3, replace=False)) for _ in range(2))  # tournament of 3
                pa, pb = ranked[a], ranked[b]
                child = [x if rng.random() < 0.5 else y for x, y in zip(pa, pb)]
                for j in range(len(child)):
                    if rng.random() < p_mut:
                        child[j] = int(rng.integers(n_bias if j == 0 else n_r))
                nxt.append(tuple(child))
            pop = nxt
        return self.polish(min(pop, key=lambda g: (-fit(g), g)), fit)

    def polish(self, g: Genome, fit: Callable[[Genome], float]) -> Genome:
        """Hill-climb from the evolution's best: change one gene, or two at once (trading
        memory between choices under a tight budget), while that improves the fitness."""
        sizes = [len(self.space.bias_grid)] + [len(self.space.ratios) + 1] * len(self.space.weight_layers)
        moves = [(j, v) for j, n in enumerate(sizes) for v in range(n)]
        while True:
            best = g
            for a, (j, v) in enumerate(moves):
                one = g[:j] + (v,) + g[j + 1:]
                if fit(one) > fit(best):
                    best = one
                for k, w in moves[a + 1:]:
                    if k != j:
                        two = one[:k] + (w,) + one[k + 1:]
                        if fit(two) > fit(best):
                            best = two
            if best == g:
                return g
            g = best

    def run(self, max_rounds: int = 12, restarts: int = 4) -> SearchResult:
        rng = np.random.default_rng(self.seed)
        base = (0,) * (len(self.space.weight_layers) + 1)
        for round_ in range(1, max_rounds + 1):
            # independent populations: a knapsack has local optima one population can miss
            best = min((self.evolve(rng) for _ in range(restarts)), key=lambda g: (-self.fitness(g), g))
            if self.overflow(self.estimate(best)):
                best = base  # nothing fits by the estimate: the smallest scheme, measured below
            k, w = self.decode(best)
            text = scheme_text(k, w)
            if best not in self.measured:
                self.measured[best] = self.measure(text)
            m = self.measured[best]
            over = self.overflow(m)
            self.log(f"search round {round_}: {text.strip().replace(chr(10), '; ')}: Δacc "
                     f"{self.score(best) * 100:+.1f} points, measured arena {m.arena_bytes:,} B + trained "
                     f"{m.trainable_bytes:,} B" + (f": over the budget by {over:,} B, searching again" if over else ""))
            if not over:
                return SearchResult(scheme_text(k, w, f"searched: {self.budget.describe()}"), k, w, self.score(best),
                                    m, self.analysis.inference_arena, len(self.measured), self.evaluations)
            if best == base:
                raise BudgetError(
                    f"no scheme fits {self.budget.describe()}: even training only the classifier needs arena "
                    f"{m.arena_bytes:,} B + trained params {m.trainable_bytes:,} B (update memory "
                    f"{m.update(self.analysis.inference_arena):,} B over inference's arena "
                    f"{self.analysis.inference_arena:,} B)")
        raise BudgetError(f"the search found no scheme within {self.budget.describe()} whose measured memory fits "
                          f"after {max_rounds} rounds; try a larger budget")
