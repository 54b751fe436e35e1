"""bench/bench_nas_replay.py on a toy table: deterministic replays, a planted optimum found,
Kendall tau of the scores."""
import itertools
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import bench_nas_replay as replay  # noqa: E402


def toy_table(noise=0.002):
  rng = np.random.default_rng(0)
  rows = []
  for encoding in itertools.product(range(5), range(5), range(4)):
    truth = 0.9 - 0.01 * float(np.abs(np.array(encoding) - np.array([3, 1, 2])).sum())
    seeds = {}
    for s in ("0", "1"):
      final = truth + rng.normal(0, noise)
      seeds[s] = {"verification_accuracy": final, "verification_std": 0.01,
                  "epochs": [{"epoch": e, "loss": 5.0 - e - 10 * truth,
                              replay.PAIR_KEY: final - 0.1 / e} for e in range(1, 11)]}
    rows.append({"encoding": list(encoding), "flops": 1000 + sum(encoding), "params": 10,
                 "seeds": seeds})
  return replay.Table({"seeds": [0, 1], "architectures": rows})


def test_replays_are_deterministic_and_evolution_beats_random_on_a_planted_optimum():
  table = toy_table()
  assert replay.replay(table, "evolution", 20, 5) == replay.replay(table, "evolution", 20, 5)
  rows = {(r["strategy"], r["budget"]): r
          for r in replay.replay_table(table, ["random", "evolution"], [20, 40], 60)}
  assert rows[("evolution", 40)]["mean"] > rows[("random", 40)]["ci95"][1]
  for row in rows.values():
    assert row["ci95"][0] <= row["mean"] <= row["ci95"][1]
    assert row["regret"] == pytest.approx(table.mean.max() - row["mean"])


def test_tau_of_scores_and_the_seed_ceiling():
  taus = {row["score"]: row["tau"] for row in replay.tau_table(toy_table())}
  assert taus["seed 0 vs seed 1 (ceiling)"] > 0.8
  assert taus["verification_after_2_epochs"] > 0.8  # final - 0.1 / e: the same order
  assert taus["minus_sum_train_loss_first_1_epochs"] > 0.8
  assert abs(taus["params"]) < 1e-9 or np.isnan(taus["params"])


def test_successive_halving_sees_more_candidates_for_the_same_budget():
  """On a table whose early-epoch scores keep the final order, random search with successive
  halving finds better architectures than random search at the same budget."""
  table = toy_table()
  assert replay.replay_halving(table, "random", 20, 3) == replay.replay_halving(
      table, "random", 20, 3)
  rows = {r["strategy"]: r for r in replay.replay_table(table, ["random", "random+sh"], [20], 60)}
  assert rows["random+sh"]["mean"] > rows["random"]["ci95"][1]


def mobilefacenet_table(rows=30):
  """Random architectures of the mobilefacenet space with a made-up accuracy."""
  from enas_face import spaces
  from enas_face.config import ModelConfig
  model = ModelConfig(search_space="mobilefacenet", image_size=32)
  sizes = [d.num_choices for d in spaces.of(model).decisions(model)]
  rng = np.random.default_rng(1)
  out = []
  for _ in range(rows):
    encoding = [int(rng.integers(n)) for n in sizes]
    truth = 0.8 + 0.01 * encoding[0]
    seeds = {s: {"verification_accuracy": truth + rng.normal(0, 0.002), "epochs": [
        {"epoch": 1, "loss": 1.0, replay.PAIR_KEY: truth}]} for s in ("0", "1")}
    out.append({"encoding": encoding, "flops": 1, "params": 1, "seeds": seeds})
  return replay.Table({"seeds": [0, 1], "decision_sizes": sizes, "architectures": out})


def test_the_table_is_the_space_mutations_land_on_the_nearest_other_row():
  table = mobilefacenet_table()
  row = tuple(table.rows[0]["encoding"])
  assert table.nearest(row) == row
  other = table.nearest(row, parent=row)
  assert other != row and other in table.index
  proposer = replay.make_strategy(table, "local_search", 0)
  assert all(n in table.index and n != row for n in proposer.neighbours(row))


@pytest.mark.slow
def test_the_enas_controller_replays_deterministically_on_a_sampled_table():
  table = mobilefacenet_table()
  first = replay.replay(table, "enas", 10, 4)
  assert first == replay.replay(table, "enas", 10, 4)
  assert first in set(table.mean.tolist())
