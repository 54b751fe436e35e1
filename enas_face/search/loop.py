"""The search loop (Zhu 2019, Algorithm 1, for any space and strategy).

Each search epoch:
  1. the strategy's training phase (one_shot: one pass of the shared model, a freshly
     drawn sample per minibatch; multi_trial: nothing);
  2. the controller phase: S steps; each draws Q samples, the strategy scores each
     (`strategies`: the reward metric with the shared weights, or after training the
     sample from scratch), the cost model prices it (`costs`: measured or TFLite latency
     only when the reward uses it; a table or an analytic count always),
     R = reward(score, cost), and the controller (ENAS's LSTM or TuNAS's categorical
     policy) takes one REINFORCE step on the Q (sample, reward) pairs (the random sampler
     takes none; in the --controller_warmup_fraction epochs only its baseline moves);
  3. log (sampled_arcs.jsonl), checkpoint.
TuNAS's path dropout warm-up (--path_dropout_warmup) widens the training samples of step 1
during the controller warm-up (search/warmup.py).
Then the ranking: the strategy's final candidates (one_shot: `num_final_samples` draws
scored on the whole reward data; multi_trial: every trial), best score first, with
their cost, parameters and FLOPs, in arcs_ranked.json (under --reward=budget only those
within the budget; Algorithm 2 trains the best from scratch:
`--mode=fixed --arc_file=RUN_DIR/arcs_ranked.json --top_k=3`).

Run folder: sampled_arcs.jsonl, checkpoints/ (sampler, controller optimiser and
baseline, epoch, and the strategy's state: the shared model, head, optimiser and random
state for one_shot), trials.jsonl and trials/ (multi_trial), latency_cache.jsonl (measured) or
tflite_latency_cache.jsonl, tensorboard/, arcs_ranked.json, search_summary.json,
accuracy_vs_cost.png. A rerun
resumes after the last finished epoch; the log is cut back to that epoch.
"""
from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import tensorflow as tf
from absl import logging

from enas_face.config import DIFFERENTIABLE, RunConfig
from enas_face import costs
from enas_face.costs import factory as cost_factory
from enas_face.data.base import FaceDataset
from enas_face.data import cleaning
from enas_face.data import reward_split
from enas_face import distribute
from enas_face import runlog
from enas_face.search import cleaning_proxy as proxy_lib
from enas_face.search import controller as controller_lib
from enas_face.search import differentiable
from enas_face.search import plots
from enas_face.search import proposer_sampler
from enas_face.search import rewards as reward_lib
from enas_face.search import strategies
from enas_face.search import warmup
from enas_face import spaces
from enas_face.training import checkpoints
from enas_face.training import fixed
from enas_face.training import loop

# Cost models whose price is a lookup or a count: they price every sample, whatever the
# reward (measured and TFLite latency price only when the reward uses the cost).
CHEAP_COST_MODELS = ("lut", "flops", "params")


def price(cost_model: costs.CostModel, sample, reward_name: str, target: float) -> dict:
  """The cost fields of a log record or a ranking entry: cost, its unit, latency_ms (for the
  latency models), the model's details, and within_budget (reward.within_budget)."""
  value, details = cost_model.evaluate(sample)
  fields = {"cost": value, "cost_unit": cost_model.unit, "cost_model": cost_model.name,
            "within_budget": reward_lib.within_budget(reward_name, value, target), **details}
  if cost_model.unit == "ms":
    fields["latency_ms"] = value
  return fields


@dataclasses.dataclass
class Sampler:
  """The sampler (a controller or random) and, for a controller, its REINFORCE trainer."""
  sampler: (controller_lib.Controller | controller_lib.CategoricalController
            | controller_lib.RandomSampler)
  trainer: controller_lib.ReinforceTrainer | None
  trackables: dict


def make_sampler(config: RunConfig) -> Sampler:
  """The --controller over the space's decisions (on the chief's host, outside any strategy)."""
  search = config.search
  decisions = spaces.of(config.model).decisions(config.model)
  if search.controller in proposer_sampler.PROPOSER_CONTROLLERS or (
      search.controller == "random" and search.cost_band_low > 0):
    sampler = proposer_sampler.ProposerSampler(
        search.controller, [d.num_choices for d in decisions], config.train.seed,
        in_band(config), **({"population": search.evolution_population,
                             "sample_size": search.evolution_tournament}
                            if search.controller == "evolution" else {}))
    return Sampler(sampler, proposer_sampler.ProposerTrainer(sampler), {})
  if search.controller == "random":
    return Sampler(controller_lib.RandomSampler(decisions, seed=config.train.seed,
                                                skip_target=search.skip_target), None, {})
  if search.controller == "categorical":
    sampler = controller_lib.CategoricalController(
        decisions, temperature=search.controller_temperature or None,
        tanh_constant=search.controller_tanh_constant or None, skip_target=search.skip_target,
        seed=config.train.seed)
  else:
    sampler = controller_lib.Controller(
        decisions, hidden_units=search.controller_hidden,
        temperature=search.controller_temperature or None,
        tanh_constant=search.controller_tanh_constant or None, skip_target=search.skip_target,
        seed=config.train.seed, name="controller")
  schedule = controller_lib.piecewise_lr(
      search.controller_lr, search.controller_lr_min,
      steps_per_decay=search.controller_lr_decay_epochs * search.controller_steps)
  optimizer = controller_lib.controller_optimizer(search.controller_optimizer, schedule)
  optimizer.build(sampler.trainable_variables)
  trainer = controller_lib.ReinforceTrainer(
      sampler, optimizer, baseline_decay=search.baseline_decay,
      entropy_weight=search.entropy_weight, skip_weight=search.skip_weight,
      grad_clip_norm=search.grad_clip_norm)
  return Sampler(sampler, trainer, {"controller_optimizer": optimizer,
                                    "baseline": trainer.baseline})


def in_band(config: RunConfig):
  """encoding -> whether its cost lies in [b T, T] (--cost_band_low = b); None without a band."""
  search = config.search
  if search.cost_band_low <= 0:
    return None
  space, cost_model = spaces.of(config.model), cost_factory.from_config(config)
  low, high = search.cost_band_low * search.cost_target, search.cost_target
  cache: dict[tuple, bool] = {}

  def inside(encoding) -> bool:
    key = tuple(int(v) for v in encoding)
    if key not in cache:
      cost = cost_model.evaluate(space.decode(list(key), config.model))[0]
      cache[key] = low <= cost <= high
    return cache[key]
  return inside


def reward_data(config: RunConfig, dataset: FaceDataset) -> tuple[FaceDataset, strategies.RewardData]:
  """The training data left after holding out --reward_identities, and the reward's data."""
  search = config.search
  pairs = None
  if search.reward_identities:
    dataset, pairs = reward_split.hold_out_identities(
        dataset, search.reward_identities, search.reward_pairs, config.data.num_folds,
        config.data.seed)
  return dataset, strategies.RewardData(search.reward_metric, dataset.val, pairs,
                                        search.val_batch_size, search.reward_batches,
                                        config.train.seed)


def cleaning_proxy(config: RunConfig, dataset: FaceDataset, full_dataset: FaceDataset,
                   placement: distribute.Placement) -> str:
  """RUN_DIR/cleaning/proxy_embeddings.npz: a proxy model (the space's default sample: the
  default architecture, softmax, no cleaning) trained --cleaning_proxy_epochs on the search's
  raw training data, then the unit embeddings of every training image, also those of the
  reward identities (so the file serves the retraining on all of them). Resumable; reused
  once written."""
  space, epochs = spaces.of(config.model), config.search.cleaning_proxy_epochs
  folder = os.path.join(config.run_dir, runlog.CLEANING_DIR)
  path = os.path.join(folder, cleaning.EMBEDDINGS_NAME)
  train = dataclasses.replace(config.train, epochs=epochs,
                              warmup_epochs=min(config.train.warmup_epochs, epochs - 1))
  proxy = dataclasses.replace(config, mode="fixed", arc=space.default(config.model), train=train,
                              candidate_arcs=(), top_k=1, run_dir=os.path.join(folder, "proxy"))
  tic = time.perf_counter()
  embeddings = proxy_lib.proxy_embeddings(proxy, dataset, [full_dataset.train.images],
                                               path, placement)
  logging.info("cleaning proxy: %d images embedded (%s) in %.0f s: %s", len(embeddings.keys),
               embeddings.source, time.perf_counter() - tic, path)
  return path


def log_path(run_dir: str) -> str:
  return os.path.join(run_dir, runlog.SAMPLED_ARCS)


def read_log(run_dir: str) -> list[dict]:
  """The rewarded samples of a search (a torn last line is dropped)."""
  return runlog.read(log_path(run_dir))


def search(config: RunConfig, dataset: FaceDataset,
           placement: distribute.Placement | None = None) -> dict:
  """Runs (or resumes) the search; returns the summary also written to search_summary.json.

  Under a multi-worker strategy only the chief samples, rewards, updates the controller
  and writes; the others train (the shared model on the chief's samples, or the chief's
  trials) and return an empty summary.
  """
  placement = placement or distribute.make_placement("default")
  if config.search.strategy == DIFFERENTIABLE:  # TAS-style width/depth search
    return differentiable.search(config, dataset, placement)
  chief = placement.is_chief
  search_cfg, space = config.search, spaces.of(config.model)
  full_dataset = dataset
  dataset, reward = reward_data(config, dataset)
  if getattr(space, "cleans_data", False) and not config.data.cleaning_embeddings:
    config = dataclasses.replace(config, data=dataclasses.replace(
        config.data, cleaning_embeddings=cleaning_proxy(config, dataset, full_dataset,
                                                        placement)))
  if chief and search_cfg.reward_identities:  # which identities the reward's pairs are made of
    runlog.write_json(os.path.join(config.run_dir, runlog.DATA_REPORT), dataset.report)
  steps_per_epoch = fixed.training_steps_per_epoch(config, dataset, placement)
  strategy = strategies.make_strategy(config, space, dataset, reward, placement, steps_per_epoch)
  sampling = make_sampler(config)
  sampler, trainer = sampling.sampler, sampling.trainer
  with placement.strategy.scope():
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    controller_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="controller_step")
  checkpoint = tf.train.Checkpoint(sampler=sampler, epoch=epoch, controller_step=controller_step,
                                   **sampling.trackables, **strategy.trackables())
  manager = tf.train.CheckpointManager(checkpoint, placement.checkpoint_dir(config.run_dir),
                                       max_to_keep=config.train.keep_checkpoints)
  latest = checkpoints.resume(checkpoint, checkpoints.checkpoint_dir(config.run_dir))
  if latest:
    logging.info("resuming search from %s (epoch %d of %d)", latest, int(epoch.numpy()),
                 search_cfg.epochs)
  strategy.start(restored=bool(latest))
  if isinstance(sampler, proposer_sampler.ProposerSampler) and chief and latest:
    # A proposer's state is its history: replayed from the log of the finished epochs.
    runlog.truncate_to_epoch(log_path(config.run_dir), int(epoch.numpy()))
    told = sampler.replay(read_log(config.run_dir))
    logging.info("%s: %d logged samples told again", search_cfg.controller, told)

  cost_model = cost_factory.from_config(config)
  # Measured costs only when the reward uses them (else only for the ranking).
  prices = search_cfg.reward != "accuracy" or search_cfg.cost_model in CHEAP_COST_MODELS
  reward_fn = reward_lib.make_reward(search_cfg.reward, search_cfg.cost_target,
                                     search_cfg.cost_exponent, search_cfg.cost_penalty)
  logging.info("search: space %s, strategy %s, sampler %s, reward %s on %s, T = %g %s; %s",
               space.name, strategy.name, search_cfg.controller, search_cfg.reward,
               reward.metric, search_cfg.cost_target, cost_model.unit,
               cost_model.describe() if prices else "the cost is not in the reward")
  writer = (tf.summary.create_file_writer(os.path.join(config.run_dir, runlog.TENSORBOARD_DIR))
            if chief else None)
  num_choices = len(space.decisions(config.model))
  state = {"train_seconds": 0.0, "widened": None}
  tic_search = time.perf_counter()
  warmup_epochs = warmup.controller_warmup_epochs(search_cfg.controller_warmup_fraction,
                                                  search_cfg.epochs)
  if warmup_epochs:
    logging.info("controller warm-up: no policy step in the first %d of %d epochs%s",
                 warmup_epochs, search_cfg.epochs,
                 f"; path dropout warm-up from p0 = {search_cfg.path_dropout_warmup:g} to 0"
                 if search_cfg.path_dropout_warmup else "")

  def draw(count: int) -> np.ndarray:
    """`count` samples of the chief's sampler, [count, n] int32 on every worker."""
    if chief:
      pick = getattr(sampler, "uniform_sample", sampler.sample)  # proposers: asks stay asks
      choices = np.stack([pick().arc.numpy() for _ in range(count)])
    else:
      choices = np.zeros([count, num_choices], np.int32)
    return distribute.broadcast_from_chief(placement, choices.astype(np.int32))

  def train_epoch(index: int) -> loop.EpochResult:
    def draw_training(count: int) -> np.ndarray:
      """The step's samples, widened by the path dropout warm-up (every worker alike)."""
      choices = draw(count)
      if not search_cfg.path_dropout_warmup:
        return choices
      widened, p = warmup.widen(choices, space.widest_choices(config.model), index, count,
                                warmup_epochs * count, search_cfg.path_dropout_warmup,
                                config.train.seed)
      state["widened"] = {"path_keep_probability": float(np.mean(p)),
                          "widened_share": float(np.mean(widened != choices))}
      return widened

    result = strategy.train_epoch(index, draw_training)
    state["train_seconds"] += result.seconds
    return result

  def controller_phase(index: int, result: loop.EpochResult) -> list[dict]:
    """S steps of Q scored, priced and rewarded samples (and a REINFORCE step each)."""
    if not chief and not strategy.collective_scoring:
      return []
    strategy.begin_scoring(index)
    if chief and hasattr(sampler, "reseed"):
      sampler.reseed(index)
    records, updates = [], []
    for _ in range(search_cfg.controller_steps):
      if chief:
        drawn = [sampler.sample() for _ in range(search_cfg.controller_samples)]
        choices = np.stack([s.arc.numpy() for s in drawn]).astype(np.int32)
      else:
        choices = np.zeros([search_cfg.controller_samples, num_choices], np.int32)
      if strategy.collective_scoring:
        choices = distribute.broadcast_from_chief(placement, choices)
      scores = strategy.score_many(choices, index)
      controller_step.assign_add(1)
      if not chief:
        continue
      rewards = []
      for position, (sample, score) in enumerate(zip(drawn, scores)):
        decoded = space.decode(choices[position].tolist(), config.model)
        priced = (price(cost_model, decoded, search_cfg.reward, search_cfg.cost_target)
                  if prices else {"cost": None, "latency_ms": None})
        # Unpriced only under --reward=accuracy, whose R ignores the cost argument.
        r = float(reward_fn(score, priced["cost"] if prices else 1.0))
        rewards.append(r)
        records.append({
            "epoch": index + 1, "step": int(controller_step.numpy()), "sample_index": position,
            **spaces.sample_record(space, decoded), "arc": space.to_string(decoded),
            "choices": choices[position].tolist(),
            "reward_metric": reward.metric, "score": float(score), **priced,
            "reward": r, "log_prob": float(sample.log_prob), "sampler": search_cfg.controller,
            "strategy": strategy.name})
      if trainer is not None:
        learn = trainer.observe if index < warmup_epochs else trainer.update
        updates.append(learn(choices, np.asarray(rewards, np.float32)))
    if not chief:
      return []
    _log_epoch(index, result, records, updates, writer, config, strategy.name,
               state["widened"] if index < warmup_epochs else None)
    return records

  loop.run_epochs(epoch=epoch, epochs=search_cfg.epochs, manager=manager,
                  log_path=log_path(config.run_dir), chief=chief, train_epoch=train_epoch,
                  finish_epoch=controller_phase)
  placement.cleanup(config.run_dir)
  if not chief:
    return {}
  writer.flush()

  candidates, ranked = rank(config, strategy, sampler, cost_model, reward_fn, reward.metric)
  if space.owns_loss and ranked:
    write_final_config(config, ranked[0])
  records = read_log(config.run_dir)
  priced = [r for r in records if r.get("cost") is not None]
  # The rewarded samples (coloured by epoch) and the final candidates the ranking scored.
  points = [{"arc": r["arc"], "cost": r["cost"], "val_accuracy": r["score"], "epoch": r["epoch"],
             "over_budget": not r.get("within_budget", True), "sampler": search_cfg.controller}
            for r in priced]
  points += [{"arc": e["encoding"], "cost": e["cost"], "val_accuracy": e["score"],
              "over_budget": not e["within_budget"], "sampler": "final candidates"}
             for e in candidates]
  unit = cost_model.unit
  plots.plot_accuracy_vs_cost(
      points, os.path.join(config.run_dir, runlog.ACCURACY_VS_COST_PLOT),
      target=search_cfg.cost_target,
      highlight=[e["encoding"] for e in ranked[:3]], cost_key="cost",
      cost_label={"ms": f"latency (ms, batch 1, {cost_model.name})", "FLOPs": "FLOPs (batch 1)",
                  "params": "trainable parameters"}[unit], unit=unit,
      title=f"{search_cfg.controller} {strategy.name} search on {space.name}: "
            f"{reward.metric} vs {cost_model.name} cost")
  summary = {
      "search_space": space.name, "strategy": strategy.name, "controller": search_cfg.controller,
      "reward_metric": reward.metric, "epochs": search_cfg.epochs,
      "controller_warmup_epochs": warmup_epochs,
      "path_dropout_warmup": search_cfg.path_dropout_warmup,
      "rewarded_samples": len(records),
      "distinct_samples": len({r["arc"] for r in records}),
      "final_samples": len(candidates),
      "final_over_budget": len(candidates) - len(ranked),
      "final_score_mean": _mean_or_none([e["score"] for e in ranked]),
      "final_score_best": ranked[0]["score"] if ranked else None,
      "final_cost_mean": _mean_or_none([e["cost"] for e in ranked]),
      "final_reward_mean": _mean_or_none([e["reward"] for e in ranked]),
      "last_epoch_reward_mean": float(np.mean([r["reward"] for r in records
                                               if r["epoch"] == search_cfg.epochs])),
      "cost_model": cost_model.name, "cost_unit": unit, "cost_target": search_cfg.cost_target,
      "cost_description": cost_model.describe(),
      "cost_evaluations": cost_model.evaluations,
      "search_wall_seconds_this_invocation": time.perf_counter() - tic_search,
      "train_seconds_this_invocation": state["train_seconds"],
  }
  if unit == "ms":
    summary["final_latency_ms_mean"] = summary["final_cost_mean"]
  if isinstance(strategy, strategies.MultiTrial):
    summary["trials"] = len(strategy.trials)
    summary["trials_trained_this_invocation"] = strategy.trained_this_invocation
  runlog.write_json(os.path.join(config.run_dir, runlog.SEARCH_SUMMARY), summary)
  return summary


def _mean_or_none(values):
  return float(np.mean(values)) if values else None


def _log_epoch(index, result, records, updates, writer, config, strategy_name,
               widened=None) -> None:
  search_cfg = config.search
  summary = {"reward_mean": float(np.mean([r["reward"] for r in records])),
             "score_mean": float(np.mean([r["score"] for r in records]))}
  if strategy_name == strategies.OneShot.name:
    summary.update(child_loss=result.loss, child_lr=result.lr,
                   child_images_per_second=result.images_per_second)
  if widened:  # the path dropout warm-up's epoch: mean p(t), decisions widened
    summary.update(widened)
  priced = [r["cost"] for r in records if r["cost"] is not None]
  if priced:
    summary[f"cost_mean_{records[0]['cost_unit']}"] = float(np.mean(priced))
    summary["within_budget_share"] = float(np.mean([r["within_budget"] for r in records]))
  if updates:
    for key in updates[0]:  # REINFORCE: baseline, entropy, ...; a proposer: told, best_reward
      summary[f"controller_{key}"] = float(np.mean([u[key] for u in updates]))
  with writer.as_default(step=index + 1):
    for key, value in summary.items():
      tf.summary.scalar(key, value)
  logging.info("search epoch %d/%d  %s", index + 1, search_cfg.epochs,
               "  ".join(f"{k} {v:.4g}" for k, v in summary.items()))


def rank(config: RunConfig, strategy, sampler, cost_model: costs.CostModel, reward_fn,
         metric: str) -> tuple[list[dict], list[dict]]:
  """The strategy's final candidates, best score first, priced; those within the budget
  (all but the over-budget ones of --reward=budget) ranked in arcs_ranked.json. Returns
  (every candidate, the ranked ones)."""
  search_cfg, space = config.search, spaces.of(config.model)
  entries = []
  for candidate in strategy.final_candidates(sampler, search_cfg.num_final_samples):
    sample = space.decode(candidate.choices.tolist(), config.model)
    priced = price(cost_model, sample, search_cfg.reward, search_cfg.cost_target)
    entry = {**spaces.sample_record(space, sample), "description": space.describe(sample),
             "reward_metric": metric, "score": candidate.score, **priced,
             "reward": float(reward_fn(candidate.score, priced["cost"])),
             **static_costs(config.model, sample), "log_prob": candidate.log_prob}
    if space.name == "enas_macro":
      entry["arc"] = entry["sample"]  # the key of rankings written before spaces had names
    entries.append(entry)
  entries.sort(key=lambda e: (-e["score"], -e["reward"]))
  within = [e for e in entries if e["within_budget"]]
  for position, entry in enumerate(within, 1):
    entry["rank"] = position
  scored_by = ("the shared weights" if strategy.name == strategies.OneShot.name
               else f"each trained for {search_cfg.trial_epochs} epochs")
  runlog.write_json(os.path.join(config.run_dir, runlog.ARCS_RANKED), {
      "space": space.name, "strategy": strategy.name,
      **({"cleaning_embeddings": config.data.cleaning_embeddings}
         if config.data.cleaning_embeddings else {}),
      "ranked_by": f"{metric} ({scored_by}; ties: reward)",
      "controller": search_cfg.controller,
      "reward": search_cfg.reward, "cost_model": cost_model.name, "cost_unit": cost_model.unit,
      "cost_target": search_cfg.cost_target, "cost_exponent": search_cfg.cost_exponent,
      "over_budget": len(entries) - len(within),
      "architectures": within[:search_cfg.num_ranked]})
  return entries, within




def write_final_config(config: RunConfig, best: dict) -> None:
  """RUN_DIR/final_config.json: the best recipe (cleaning + loss + architecture) with what
  retrains it from scratch (--mode=fixed --search_space=S --arc_file=this file; its
  cleaning_embeddings reproduce the cleaned training data the search saw)."""
  runlog.write_json(os.path.join(config.run_dir, runlog.FINAL_CONFIG), {
      "space": best["space"], "sample": best["sample"], "encoding": best["encoding"],
      "description": best["description"], "search_score": best["score"],
      "reward_metric": best["reward_metric"], "reward": best["reward"], "cost": best["cost"],
      "cost_unit": best["cost_unit"], "params": best["params"], "flops": best["flops"],
      "cleaning_embeddings": config.data.cleaning_embeddings,
      "retrain": f"python -m enas_face.main --mode=fixed --search_space={best['space']} "
                 f"--arc_file={os.path.join(config.run_dir, runlog.FINAL_CONFIG)} "
                 "--run_dir=RETRAIN_DIR (with the search's data and model flags)"})


def static_costs(model_config, sample) -> dict:
  """Parameters and FLOPs of `sample`, counted by its space (None where it cannot)."""
  space = spaces.of(model_config)
  out = {}
  for key, count in (("params", space.params), ("flops", space.flops)):
    try:
      out[key] = int(count(model_config, sample))
    except NotImplementedError:
      out[key] = None
  return out
