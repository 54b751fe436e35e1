"""The proposers (evolution, local search, random-in-band) as samplers of the search loop:
band kept, the log replays into the same proposer, and a search resumed after a lost
checkpoint logs exactly what the uninterrupted one did."""
import json
import os

import numpy as np
import pytest
from enas_face import spaces
from enas_face.config import ConfigError
from enas_face.search import proposer_sampler

from test_search_core import (MULTI_TRIAL, flagfile, lose_last_checkpoint,  # noqa: F401
                              read_jsonl)
from test_search_core import parse  # noqa: F401  (a fixture: search_parse wraps it)

SIZES = (5, 4, 6)


def fake_score(encoding) -> float:
  return -float(np.abs(np.array(encoding) - np.array([3, 1, 4])).sum())


def drive(sampler, epochs: int, steps: int, samples: int, start: int = 0) -> list[dict]:
  """The search loop's controller phase without training, from epoch `start`: per epoch
  reseed, per step Q asks then one update; returns the log it would write."""
  trainer, records = proposer_sampler.ProposerTrainer(sampler), []
  for epoch in range(start, epochs):
    sampler.reseed(epoch)
    for step in range(steps):
      choices = np.stack([sampler.sample().arc.numpy() for _ in range(samples)])
      rewards = np.asarray([fake_score(c) for c in choices], np.float32)
      trainer.update(choices, rewards)
      records += [{"epoch": epoch + 1, "step": epoch * steps + step + 1,
                   "choices": c.tolist(), "reward": float(r)}
                  for c, r in zip(choices, rewards)]
  return records


@pytest.mark.parametrize("name", ["random", "evolution", "local_search"])
def test_a_replayed_log_rebuilds_the_proposer_exactly(name):
  in_band = lambda encoding: sum(encoding) % 4 != 0  # noqa: E731
  options = {"population": 4, "sample_size": 2} if name == "evolution" else {}
  straight = drive(proposer_sampler.ProposerSampler(name, SIZES, 7, in_band, **options), 4, 2, 3)
  assert all(in_band(tuple(r["choices"])) for r in straight)
  resumed = proposer_sampler.ProposerSampler(name, SIZES, 7, in_band, **options)
  assert resumed.replay(straight[:12]) == 12  # epochs 1-2 logged, then the kill
  more = drive(resumed, 4, 2, 3, start=2)
  assert straight[12:] == more


def test_a_log_of_another_seed_is_refused():
  log = drive(proposer_sampler.ProposerSampler("evolution", SIZES, 1, population=2,
                                               sample_size=2), 2, 1, 2)
  with pytest.raises(ValueError, match="does not replay"):
    proposer_sampler.ProposerSampler("evolution", SIZES, 2, population=2,
                                     sample_size=2).replay(log)


# ------------------------------------------------------------- through the CLI
@pytest.fixture
def search_parse(parse):
  """test_search_core's in-process parser, in --mode=search (where the search flags are
  checked)."""
  return lambda *argv: parse("--mode=search", *argv)


def test_band_and_evolution_flags_are_checked(search_parse):
  parse = search_parse  # noqa: F811
  with pytest.raises(ConfigError, match="--cost_band_low"):
    parse("--controller=evolution", "--cost_band_low=0.8")  # measured latency: not cheap
  with pytest.raises(ConfigError, match="--cost_band_low"):
    parse("--controller=enas", "--cost_model=params", "--cost_target=1e5", "--cost_band_low=0.8")
  with pytest.raises(ConfigError, match="--evolution_tournament"):
    parse("--controller=evolution", "--evolution_population=2", "--evolution_tournament=3")
  config = parse("--controller=evolution", "--cost_model=params", "--cost_target=1e5",
                 "--cost_band_low=0.8")
  assert config.search.cost_band_low == 0.8 and config.search.controller == "evolution"


def params_band(parse) -> tuple[float, float]:
  """(b, T): T the median parameter count of the tiny space, b = 0.7."""
  model = parse().model
  space = spaces.of(model)
  rng = np.random.default_rng(0)
  sizes = [d.num_choices for d in space.decisions(model)]
  counts = [space.params(model, space.decode([int(rng.integers(n)) for n in sizes], model))
            for _ in range(200)]
  return 0.7, float(np.median(counts))


@pytest.mark.slow
def test_an_evolution_search_keeps_its_band_and_resumes_to_the_same_log(
    search_parse, flagfile, main_in_process, tmp_path):
  low, target = params_band(search_parse)
  run_dir = str(tmp_path / "search")
  args = [f"--flagfile={flagfile}", *MULTI_TRIAL, f"--run_dir={run_dir}",
          "--controller=evolution", "--evolution_population=2", "--evolution_tournament=2",
          "--cost_model=params", f"--cost_target={target}", f"--cost_band_low={low}"]
  result = main_in_process(*args)
  assert result.returncode == 0, result.stderr[-4000:]
  log_path = os.path.join(run_dir, "sampled_arcs.jsonl")
  first = read_jsonl(log_path)
  assert len(first) == 4 and all(low * target <= r["cost"] <= target for r in first)
  assert all(r["sampler"] == "evolution" and len(r["choices"]) > 0 for r in first)
  lose_last_checkpoint(run_dir, 2)
  rerun = main_in_process(*args)
  assert rerun.returncode == 0, rerun.stderr[-4000:]
  assert "logged samples told again" in rerun.stderr
  again = read_jsonl(log_path)
  assert [(r["choices"], r["reward"]) for r in again] == [(r["choices"], r["reward"])
                                                           for r in first]
  with open(os.path.join(run_dir, "arcs_ranked.json")) as f:
    assert json.load(f)["controller"] == "evolution"


def test_halving_rungs():
  from enas_face.search.strategies import halving_rungs
  assert halving_rungs(10, 3) == [1, 3, 10]
  assert halving_rungs(4, 2) == [1, 2, 4]
  assert halving_rungs(2, 3) == [1, 2]


def test_halving_flags_are_checked(search_parse):
  parse = search_parse  # noqa: F811
  with pytest.raises(ConfigError, match="--halving_eta"):
    parse("--halving_eta=1", "--search_strategy=multi_trial")
  with pytest.raises(ConfigError, match="--halving_eta"):
    parse("--halving_eta=3")  # one_shot does not train its samples


@pytest.mark.slow
def test_successive_halving_trains_in_rungs_and_ranks_only_full_trainings(
    flagfile, main_in_process, tmp_path):
  run_dir = str(tmp_path / "search")
  args = [f"--flagfile={flagfile}", *MULTI_TRIAL, f"--run_dir={run_dir}", "--search_epochs=1",
          "--controller_samples=3", "--trial_epochs=2", "--halving_eta=2"]
  result = main_in_process(*args)
  assert result.returncode == 0, result.stderr[-4000:]
  trials = read_jsonl(os.path.join(run_dir, "trials.jsonl"))
  distinct = {t["encoding"] for t in trials}
  final = {}
  for t in trials:
    final[t["encoding"]] = t
  reached = sorted(t["trial_epochs"] for t in final.values())
  # rungs [1, 2]: n distinct samples to epoch 1, ceil(n / 2) of them on to epoch 2
  n = len(distinct)
  assert len(reached) == n and reached.count(2) == -(-n // 2)
  assert all(set(t["rung_scores"]) <= {"1", "2"} for t in trials)
  log = read_jsonl(os.path.join(run_dir, "sampled_arcs.jsonl"))
  for record in log:  # each sample rewarded with the score of the last rung it reached
    rungs = final[record["encoding"]]["rung_scores"]
    assert record["score"] == pytest.approx(rungs[max(rungs, key=int)])
  with open(os.path.join(run_dir, "arcs_ranked.json")) as f:
    ranked = json.load(f)["architectures"]
  assert {e["encoding"] for e in ranked} == {e for e, t in final.items()
                                              if t["trial_epochs"] == 2}
  rerun = main_in_process(*args)  # finished: nothing trains again
  assert rerun.returncode == 0
  assert len(read_jsonl(os.path.join(run_dir, "trials.jsonl"))) == len(trials)
