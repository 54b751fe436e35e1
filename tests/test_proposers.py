"""Multi-trial proposers (search/proposers.py) on a toy table whose answer is known."""
import numpy as np
import pytest

from enas_face.search import proposers

SIZES = (6, 6, 6, 6)


def toy_score(encoding) -> float:
  """A planted optimum at (4, 1, 3, 2): minus the L1 distance to it (smooth, one peak)."""
  return -float(np.abs(np.array(encoding) - np.array([4, 1, 3, 2])).sum())


def in_band(encoding) -> bool:
  return sum(encoding) % 7 != 0  # a band that excludes some architectures


def steps_to_optimum(name: str, seed: int, budget: int = 300) -> int:
  proposer = proposers.make_proposer(name, SIZES, np.random.default_rng(seed), in_band)
  for step in range(1, budget + 1):
    encoding = proposer.ask()
    assert in_band(encoding) and len(encoding) == len(SIZES)
    proposer.tell(encoding, toy_score(encoding))
    if toy_score(encoding) == 0:
      return step
  return budget + 1


@pytest.mark.parametrize("name", ["evolution", "local_search"])
def test_mutation_based_proposers_find_the_planted_optimum_faster_than_random(name):
  random = np.median([steps_to_optimum("random", seed) for seed in range(20)])
  found = np.median([steps_to_optimum(name, seed) for seed in range(20)])
  assert found < random / 2, (name, found, random)


@pytest.mark.parametrize("name", proposers.PROPOSERS)
def test_a_proposer_is_deterministic_per_seed(name):
  def trace(seed):
    proposer = proposers.make_proposer(name, SIZES, np.random.default_rng(seed), in_band)
    out = []
    for _ in range(40):
      encoding = proposer.ask()
      proposer.tell(encoding, toy_score(encoding))
      out.append(encoding)
    return out
  assert trace(3) == trace(3) and trace(3) != trace(4)


def test_mutation_changes_one_decision_and_stays_in_the_band():
  proposer = proposers.RandomInBand(SIZES, np.random.default_rng(0), in_band)
  parent = (1, 2, 3, 4)
  for _ in range(200):
    child = proposer.mutate(parent)
    assert in_band(child) and sum(a != b for a, b in zip(parent, child)) == 1


def test_local_search_restarts_after_a_local_optimum():
  # The optimum of the toy score is reached; afterwards every neighbour is tried once and a
  # new run starts from a random architecture (never one already tried).
  proposer = proposers.LocalSearch(SIZES, np.random.default_rng(1))
  seen = []
  for _ in range(200):
    encoding = proposer.ask()
    proposer.tell(encoding, toy_score(encoding))
    seen.append(encoding)
  assert len(set(seen)) == len(seen)


def test_local_search_on_an_exhausted_table_answers_after_a_few_draws():
  """A table of 3 rows, every one tried: each ask gives up after `repair` draws (not
  max_draws) and repeats a row."""
  rows = [(0, 0), (1, 1), (2, 2)]
  draws = []

  def draw(rng):
    draws.append(1)
    return rows[int(rng.integers(len(rows)))]

  def nearest(encoding, parent):
    return min((r for r in rows if r != parent), key=lambda r: sum(abs(a - b) for a, b in
                                                                   zip(r, encoding)))

  proposer = proposers.make_proposer("local_search", (3, 3), np.random.default_rng(0),
                                     repair=10, draw=draw, project=nearest)
  for step in range(12):
    encoding = proposer.ask()
    assert encoding in rows
    proposer.tell(encoding, -float(step))
  assert {e for e, _ in proposer.history} == set(rows)
  assert len(draws) <= 12 * 11


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="unknown proposer 'annealing'"):
    proposers.make_proposer("annealing", SIZES, np.random.default_rng(0))
  with pytest.raises(ValueError, match="sample_size"):
    proposers.RegularizedEvolution(SIZES, np.random.default_rng(0), population=4, sample_size=5)
