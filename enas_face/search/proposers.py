"""Multi-trial proposers: which architecture to train next, from the scores seen so far.

    proposer = RegularizedEvolution(space, model_config, rng, in_band=band)
    for _ in range(budget):
        encoding = proposer.ask()
        proposer.tell(encoding, train_and_score(encoding))

Plain numpy over a space's decision encoding (no TensorFlow), so the same proposer drives a
search that trains (the search loop) and a replay that reads a table (bench/nas_replay.py).

- random: uniform samples of the space restricted to the band (rejection sampling).
- evolution: regularized evolution (Real et al. 2019): the first `population` asks are
  random; then a tournament of `sample_size` members drawn from the population (the last
  `population` told, oldest dropped first: ageing), whose best is mutated.
- local_search: local search (White et al. 2020): from the best architecture told so far,
  ask its untried neighbours (one decision changed) in random order; a better one becomes
  the centre; when every neighbour of the centre is tried, restart from a random sample.
A mutation changes one decision, drawn uniformly, to another of its values, drawn
uniformly; a child outside the band is redrawn (`repair` tries, then a random sample).
`in_band(encoding) -> bool` is the cost constraint (e.g. FLOPs in [0.8 T, T]).

A sampled space (a table of trained architectures, a small subset of the space) plugs in two
hooks: `draw(rng) -> encoding` replaces the uniform sample (a uniform row), and
`project(encoding, parent) -> encoding` maps a mutated child or a neighbour to the nearest
admissible architecture other than `parent` (a row of the table).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

PROPOSERS = ("random", "evolution", "local_search")


class Proposer:
  """ask() -> an encoding (list of ints); tell(encoding, score): higher is better."""

  def __init__(self, sizes: Sequence[int], rng: np.random.Generator,
               in_band: Callable[[tuple], bool] | None = None, repair: int = 100,
               max_draws: int = 100_000,
               draw: Callable[[np.random.Generator], tuple] | None = None,
               project: Callable[[tuple, tuple | None], tuple] | None = None):
    self.sizes = tuple(int(n) for n in sizes)
    if not self.sizes or min(self.sizes) < 1:
      raise ValueError(f"every decision needs at least one value, got sizes {self.sizes}")
    self.rng = rng
    self.in_band = in_band or (lambda encoding: True)
    self.repair = repair
    self.max_draws = max_draws
    self.draw, self.project = draw, project
    self.history: list[tuple[tuple, float]] = []

  def random(self) -> tuple:
    """A uniform sample of the band (rejection sampling), or the `draw` hook's."""
    if self.draw is not None:
      return tuple(int(v) for v in self.draw(self.rng))
    for _ in range(self.max_draws):
      encoding = tuple(int(self.rng.integers(n)) for n in self.sizes)
      if self.in_band(encoding):
        return encoding
    raise RuntimeError(f"no architecture in the band after {self.max_draws} uniform draws")

  def mutate(self, encoding: tuple) -> tuple:
    """One decision changed to another of its values; redrawn up to `repair` times until in
    the band, else a random sample."""
    choices = [i for i, n in enumerate(self.sizes) if n > 1]
    for _ in range(self.repair):
      i = int(self.rng.choice(choices))
      value = int(self.rng.integers(self.sizes[i] - 1))
      child = list(encoding)
      child[i] = value + (value >= encoding[i])
      child = self.project(tuple(child), tuple(encoding)) if self.project else tuple(child)
      if self.in_band(child):
        return child
    return self.random()

  def ask(self) -> tuple:
    raise NotImplementedError

  def tell(self, encoding, score: float) -> None:
    self.history.append((tuple(int(v) for v in encoding), float(score)))

  def best(self) -> tuple[tuple, float]:
    """(encoding, score) of the best told so far (the first of equal scores)."""
    if not self.history:
      raise ValueError("nothing told yet")
    return max(self.history, key=lambda item: item[1])


class RandomInBand(Proposer):
  def ask(self) -> tuple:
    return self.random()


class RegularizedEvolution(Proposer):
  """Tournament selection over an ageing population, one mutation per child."""

  def __init__(self, sizes, rng, in_band=None, population: int = 16, sample_size: int = 4,
               **kwargs):
    super().__init__(sizes, rng, in_band, **kwargs)
    if not 1 <= sample_size <= population:
      raise ValueError(f"sample_size must lie in 1..population={population}, got {sample_size}")
    self.population, self.sample_size = population, sample_size

  def ask(self) -> tuple:
    if len(self.history) < self.population:
      return self.random()
    members = self.history[-self.population:]
    drawn = self.rng.choice(len(members), self.sample_size, replace=False)
    parent = max((members[i] for i in drawn), key=lambda item: item[1])[0]
    return self.mutate(parent)


class LocalSearch(Proposer):
  """Neighbours of the current run's best, untried ones first; when every neighbour of it is
  tried without improvement (a local optimum), a new run starts from a random sample, an
  untried one if `repair` draws find one."""

  def __init__(self, sizes, rng, in_band=None, **kwargs):
    super().__init__(sizes, rng, in_band, **kwargs)
    self.run: list[tuple[tuple, float]] = []  # what the current local run was told
    self.centre: tuple | None = None
    self.queue: list[tuple] = []

  def neighbours(self, encoding: tuple) -> list[tuple]:
    out = []
    for i, n in enumerate(self.sizes):
      for value in range(n):
        if value != encoding[i]:
          child = list(encoding)
          child[i] = value
          child = self.project(tuple(child), tuple(encoding)) if self.project else tuple(child)
          if self.in_band(child) and child not in out and child != tuple(encoding):
            out.append(child)
    return out

  def tell(self, encoding, score: float) -> None:
    super().tell(encoding, score)
    self.run.append(self.history[-1])

  def ask(self) -> tuple:
    tried = {encoding for encoding, _ in self.history}
    if self.run:
      centre = max(self.run, key=lambda item: item[1])[0]
      if centre != self.centre:
        self.centre = centre
        neighbours = self.neighbours(centre)
        self.queue = [neighbours[i] for i in self.rng.permutation(len(neighbours))]
      while self.queue:
        candidate = self.queue.pop(0)
        if candidate not in tried:
          return candidate
    self.run, self.centre, self.queue = [], None, []  # a start, or a restart
    for _ in range(self.repair):  # a small space (a table) may have nothing left untried
      candidate = self.random()
      if candidate not in tried:
        return candidate
    return self.random()


def make_proposer(name: str, sizes, rng, in_band=None, **options) -> Proposer:
  """The proposer called `name` (PROPOSERS)."""
  classes = {"random": RandomInBand, "evolution": RegularizedEvolution,
             "local_search": LocalSearch}
  if name not in classes:
    raise ValueError(f"unknown proposer {name!r}; choose from {', '.join(PROPOSERS)}")
  return classes[name](sizes, rng, in_band, **options)
