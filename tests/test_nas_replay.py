"""bench/bench_nas_replay.py on a toy table: deterministic replays, a planted optimum found,
Kendall tau of the scores."""
import itertools
import json
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
    shares = [p["share"] for p in row["picks"]]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1
  # what one search most likely returns: evolution's most frequent pick is the planted optimum
  assert rows[("evolution", 40)]["picks"][0]["id"] == "3 1 2"


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


def test_replay_rows_are_saved_and_a_rerun_keeps_them(tmp_path):
  table, out = toy_table(), str(tmp_path / "replay.json")
  first = replay.replay_table(table, ["random"], [10, 20], 20, out=out)
  saved = json.loads(open(out).read())
  assert saved["table"] == table.fingerprint and saved["replays"] == 20
  assert saved["rows"] == first
  saved["rows"][0]["mean"] = 0.5  # a rerun reads the saved row instead of replaying it
  open(out, "w").write(json.dumps(saved))
  again = replay.replay_table(table, ["random"], [10, 20], 20, out=out)
  assert again[0]["mean"] == 0.5 and again[1] == first[1]
  other = replay.replay_table(table, ["random"], [10], 10, out=out)  # another replay count
  assert other[0] == replay.replay_table(table, ["random"], [10], 10)[0]


def test_tau_table_reads_supernet_scores_and_needs_two_seeds_for_the_ceiling():
  table = toy_table()
  scores = {"scores": {" ".join(map(str, row["encoding"])): {
      "tunas": {"batch": float(table.mean[i]), "recalibrate": -float(table.mean[i])},
      "enas": {"batch": 0.5}} for i, row in enumerate(table.rows)}}
  del scores["scores"][" ".join(map(str, table.rows[5]["encoding"]))]["enas"]  # not every row
  taus = {row["score"]: row["tau"] for row in replay.tau_table(table, scores)}
  assert taus["supernet tunas, BN batch"] == pytest.approx(1.0)
  assert taus["supernet tunas, BN recalibrate"] == pytest.approx(-1.0)
  assert not any(name.startswith("supernet enas") for name in taus)
  single = replay.Table({"seeds": [0], "architectures": [
      dict(row, seeds={"0": row["seeds"]["0"]}) for row in table.rows]})
  names = [row["score"] for row in replay.tau_table(single)]
  assert names[0] != "seed 0 vs seed 1 (ceiling)" and "flops" in names


def test_trainings_charge_each_epoch_once_and_keep_an_architectures_seed():
  table = toy_table(noise=0.05)
  trainings = replay.Trainings(table, np.random.default_rng(0))
  a = tuple(table.rows[7]["encoding"])
  first = trainings.train(a, 1)
  assert trainings.spent == pytest.approx(0.1)  # 1 of 10 epochs
  trainings.train(a, 3)
  assert trainings.spent == pytest.approx(0.3)  # resumed: 2 more epochs
  final = trainings.train(a, 10)
  assert trainings.spent == pytest.approx(1.0)
  assert [trainings.train(a, 10) for _ in range(5)] == [final] * 5  # one seed, no new cost
  assert trainings.train(a, 1) == first and trainings.spent == pytest.approx(1.0)
  seed = trainings.seed[a]
  assert final == table.rows[7]["seeds"][seed]["verification_accuracy"]


def test_a_strategy_that_repeats_itself_spends_one_training(monkeypatch):
  table = toy_table()
  row = tuple(table.rows[3]["encoding"])

  class Stubborn:
    history = []

    def ask(self):
      return row

    def tell(self, encoding, score):
      self.history.append((encoding, score))

    def best(self):
      return self.history[0]

  monkeypatch.setattr(replay, "make_strategy", lambda *args, **kwargs: Stubborn())
  assert replay.replay(table, "random", 10, 0, max_asks=3) == table.mean[3]
  assert len(Stubborn.history) == 30  # gave up after max_asks x budget asks


def test_a_mutation_avoids_trained_rows_while_any_is_left():
  table = mobilefacenet_table(rows=4)
  rows = [tuple(r["encoding"]) for r in table.rows]
  nearest = table.nearest(rows[0], parent=rows[0])
  rest = [r for r in rows[1:] if r != nearest]
  assert table.nearest(rows[0], parent=rows[0], avoid={nearest: 1}) in rest
  assert table.nearest(rows[0], parent=rows[0], avoid=set(rows)) in rows[1:]  # all trained


def test_rows_replayed_in_worker_processes_equal_the_rows_replayed_in_order(tmp_path):
  """--workers: each row is seeded by itself, so two processes give the rows one gives, in
  the order asked, all saved."""
  table, out = toy_table(), str(tmp_path / "replay.json")
  names, budgets = ["local_search", "evolution"], [10, 20]
  in_order = replay.replay_table(table, names, budgets, 8)
  assert replay.replay_table(table, names, budgets, 8, out=out, workers=2) == in_order
  assert len(json.loads(open(out).read())["rows"]) == 4


def test_a_score_sharing_its_runs_noise_is_held_against_another_runs_accuracy():
  """A score that IS each run's final accuracy (no architecture signal, pure seed noise)
  ranks the mean of the same runs well, but another seed's accuracy only as well as the
  ceiling: the independent tau exposes the shared noise."""
  rng = np.random.default_rng(1)
  rows = []
  for i in range(40):
    seeds = {}
    for s in ("0", "1"):
      final = 0.9 + rng.normal(0, 0.01)  # every architecture equal: noise only
      seeds[s] = {"verification_accuracy": final, "verification_std": 0.01,
                  "epochs": [{"epoch": 1, "loss": 1.0, replay.PAIR_KEY: final}]}
    rows.append({"encoding": [i], "flops": 1000 + i, "params": 10, "seeds": seeds})
  table = replay.Table({"seeds": [0, 1], "architectures": rows})
  taus = {row["score"]: row for row in replay.tau_table(table)}
  same_run = taus["verification_after_1_epochs"]
  assert same_run["tau"] > 0.4  # inflated by the shared noise
  assert abs(same_run["tau_independent"]) < 0.3
  ceiling = taus["seed 0 vs seed 1 (ceiling)"]
  assert ceiling["tau"] == ceiling["tau_independent"] and abs(ceiling["tau"]) < 0.3
  assert same_run["tau_independent"] == pytest.approx(ceiling["tau"])  # the same two pairs
