"""Replay search strategies against the face-NAS table, and rank cheap scores by Kendall tau.

    python bench/bench_nas_replay.py --table=bench/data/nas_table.json --replays=200 \\
        --budgets=10,20,40

Replay: a strategy asks for architectures; a query returns the stand-alone verification
accuracy of one of its trained seeds, drawn at random at its first query (the noise a real
search sees). The budget k counts trainings: an architecture asked again is answered with
the same score for free, as the search's multi_trial trains each distinct sample once (a
table of 73 rows would otherwise spend much of k = 40 on repeats that a real space of
millions does not have). The
table is the space the replay searches (a uniform sample of the band, far smaller than the
space): a random sample is a uniform row; a mutation or a neighbour (one decision changed)
is projected to the nearest row other than its parent and not yet trained in this replay
(L1 distance over the decision indices, each scaled to [0, 1]; ties broken at random), so
the mutation-based strategies move between similar tabled architectures as they would to
new ones in the space. The RL controllers ("enas": the LSTM controller
of --controller=enas; "categorical": TuNAS's independent categorical policy) are the search loop's own samplers and REINFORCE trainers (loop.make_sampler),
updated every Q = --rl_batch answers with the rewards R = accuracy; a drawn architecture is
answered by its nearest row, and the update uses the drawn one. After k queries the
strategy's pick is its best-scoring architecture; what counts is that pick's mean accuracy
over seeds. Over R replays (seeds 0..R-1): the mean of that, its 95 % interval (mean +-
1.96 sd / sqrt(R)), the regret: the table's best mean minus the mean found, and the
architectures picked most often with their share of the replays (what one search would most
likely return: the candidate to retrain with more seeds).

Successive halving ("<strategy>+sh", multi-fidelity): brackets of eta^2 = 9 candidates
asked from the strategy and scored after 1 epoch (the table's per-epoch verification
column of the architecture's seed: the score of a 10-epoch run after its first epoch, not a
1-epoch run's), the best 3 after 3 epochs, the best 1 after all epochs; each candidate is
told the score of the last epoch it reached. A bracket costs at most (9 x 1 + 3 x 3 + 1 x E)
/ E full trainings (a promoted trial resumes: it pays only the rung's extra epochs; a
candidate trained before pays only what it lacks); the budget k counts full trainings, and
what no whole bracket fits is spent on full trainings. The pick is the best full-fidelity
score.

Cheap scores: Kendall tau (scipy.stats.kendalltau, tau-b) of each score against the mean
stand-alone accuracy over the whole table; the seed-noise ceiling is the tau between the
two seeds' accuracies. A score read off a seed's own run (its first epochs, jacob_cov at its
initialisation) shares that run's noise with its final accuracy, which inflates its tau
against the mean; the second column holds every score against another run's accuracy
(independent_tau), the figure comparable with the ceiling. With `--supernet_scores` (bench_nas_supernet.py score's file) the
supernets' scores join the tau table, one column per recipe and BatchNorm mode.

The replay rows are saved to `--out` as they are done (bench/data/nas_replay.json, with the
table's fingerprint): a rerun on the same table and replay count keeps them, so the long
replays of the RL controllers (TensorFlow, most of the hour) resume.
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import json
import multiprocessing
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from enas_face import runlog  # noqa: E402
from enas_face.search import proposers  # noqa: E402

PAIR_KEY = "pairs/heldout/verification_accuracy"
# Replay names of the search loop's REINFORCE samplers -> their --controller value.
RL_CONTROLLERS = {"enas": "enas", "categorical": "categorical"}
RL_STRATEGIES = tuple(RL_CONTROLLERS)


class Table:
  """The architectures of a table with every seed trained; queries by encoding."""

  def __init__(self, table: dict):
    seeds = [str(s) for s in table["seeds"]]
    self.rows = [row for row in table["architectures"] if all(s in row["seeds"] for s in seeds)]
    if len(self.rows) < 2:
      raise ValueError(f"the table has {len(self.rows)} architectures with all seeds {seeds}")
    self.seeds = seeds
    self.index = {tuple(row["encoding"]): i for i, row in enumerate(self.rows)}
    self.accuracy = np.array([[row["seeds"][s]["verification_accuracy"] for s in seeds]
                              for row in self.rows])
    self.mean = self.accuracy.mean(axis=1)
    # What the replays read: a saved result belongs to this table only if this matches.
    self.fingerprint = hashlib.sha1(json.dumps(
        [[row["encoding"], self.accuracy[i].tolist()] for i, row in enumerate(self.rows)]
    ).encode()).hexdigest()
    width = len(self.rows[0]["encoding"])
    self.sizes = tuple(table.get("decision_sizes") or (
        int(max(row["encoding"][i] for row in self.rows)) + 1 for i in range(width)))
    self.points = np.array([row["encoding"] for row in self.rows], float) / np.maximum(
        np.array(self.sizes, float) - 1, 1)
    self._tie_rng = np.random.default_rng(0)

  def name(self, encoding) -> str:
    """The row's id (a007), or its encoding when the table has no ids."""
    row = self.rows[self.index[tuple(encoding)]]
    return row.get("id") or " ".join(str(int(v)) for v in row["encoding"])

  def draw(self, rng: np.random.Generator) -> tuple:
    """A uniform row."""
    return tuple(self.rows[int(rng.integers(len(self.rows)))]["encoding"])

  def nearest(self, encoding, parent=None, rng: np.random.Generator | None = None,
              avoid=()) -> tuple:
    """The row nearest to `encoding` (L1 over indices scaled to [0, 1]) other than `parent`
    and, while any other is left, the rows in `avoid`; ties at random."""
    point = np.asarray(encoding, float) / np.maximum(np.array(self.sizes, float) - 1, 1)
    distance = np.abs(self.points - point).sum(axis=1)
    if parent is not None and tuple(parent) in self.index:
      distance[self.index[tuple(parent)]] = np.inf
    avoided = [self.index[tuple(a)] for a in avoid if tuple(a) in self.index]
    if avoided and np.isfinite(np.delete(distance, avoided)).any():
      distance[avoided] = np.inf
    ties = np.flatnonzero(distance <= distance.min() + 1e-12)
    pick = ties[int((rng or self._tie_rng).integers(len(ties)))]
    return tuple(self.rows[pick]["encoding"])

  def space_sizes(self, model_config) -> tuple:
    from enas_face import spaces
    return tuple(d.num_choices for d in spaces.of(model_config).decisions(model_config))


def make_strategy(table: Table, name: str, seed: int, tried=()):
  """The proposer (proposers.py) or RL controller `name` over the table's rows. A mutation or
  a neighbour lands on the nearest row not in `tried` (the replay's trained architectures),
  while one is left: in the space, one changed decision nearly always makes an untried
  architecture. Ties go by the replay's own generator, so a replay's result does not depend
  on the replays before it (or on the process that runs it)."""
  if name in RL_STRATEGIES:
    return ControllerProposer(table, name, seed)
  ties = np.random.default_rng([seed, 4])
  return proposers.make_proposer(
      name, table.sizes, np.random.default_rng([seed, 2]), draw=table.draw,
      project=lambda encoding, parent: table.nearest(encoding, parent, ties, avoid=tried))


class ControllerProposer:
  """The search loop's REINFORCE sampler as a proposer: ask() draws from the policy and
  answers with the nearest row; every `batch` tells, one update on the drawn architectures
  with their rewards."""

  def __init__(self, table: Table, name: str, seed: int, batch: int = 5):
    from enas_face import config as config_lib
    from enas_face.search import loop
    model = config_lib.ModelConfig(search_space="mobilefacenet", image_size=32)
    if table.space_sizes(model) != table.sizes:  # e.g. a toy table with its own decisions
      raise ValueError("the RL controllers replay the mobilefacenet table only")
    run = config_lib.RunConfig(
        mode="search", run_dir="", arc=None, model=model, data=config_lib.DataConfig(),
        train=config_lib.TrainConfig(seed=seed), eval=config_lib.EvalConfig(),
        search=config_lib.SearchConfig(controller=RL_CONTROLLERS[name],
                                       controller_samples=batch, reward="accuracy"))
    sampling = loop.make_sampler(run)
    self.sampler, self.trainer, self.batch = sampling.sampler, sampling.trainer, batch
    self.table, self.rng = table, np.random.default_rng([seed, 3])
    self.drawn: dict[tuple, list] = {}
    self.pending: list[tuple[list, float]] = []
    self.history: list[tuple[tuple, float]] = []

  def ask(self) -> tuple:
    arc = self.sampler.sample().arc.numpy().tolist()
    row = self.table.nearest(tuple(arc), None, self.rng)
    self.drawn.setdefault(row, []).append(arc)
    return row

  def tell(self, encoding, score: float) -> None:
    encoding = tuple(encoding)
    self.history.append((encoding, float(score)))
    arc = self.drawn[encoding].pop(0) if self.drawn.get(encoding) else list(encoding)
    self.pending.append((arc, float(score)))
    if len(self.pending) == self.batch:
      self.trainer.update(np.array([a for a, _ in self.pending], np.int32),
                          np.array([r for _, r in self.pending], np.float32))
      self.pending = []

  def best(self) -> tuple[tuple, float]:
    return max(self.history, key=lambda item: item[1])


class Trainings:
  """What a search has trained so far, on the table: each architecture is trained once, with
  one seed drawn at random at its first training (the noise a real search sees). train(a, e)
  returns its verification accuracy after e epochs (the table's per-epoch column; the last:
  the final accuracy) and charges only the epochs not trained before (a repeated ask of a
  trained architecture is free, as the search's multi_trial reuses a trial's score, and a
  trial resumed to the next rung pays only the rung's extra epochs), in full trainings."""

  def __init__(self, table: Table, rng: np.random.Generator):
    self.table, self.rng = table, rng
    self.full = min(len(row["seeds"][s]["epochs"]) for row in table.rows for s in table.seeds)
    self.seed: dict[tuple, str] = {}
    self.epochs: dict[tuple, int] = {}
    self.spent = 0.0

  def train(self, encoding, epochs: int) -> float:
    encoding = tuple(encoding)
    if encoding not in self.seed:
      self.seed[encoding] = self.table.seeds[int(self.rng.integers(len(self.table.seeds)))]
    epochs = min(epochs, self.full)
    self.spent += max(0, epochs - self.epochs.get(encoding, 0)) / self.full
    self.epochs[encoding] = max(epochs, self.epochs.get(encoding, 0))
    run = self.table.rows[self.table.index[encoding]]["seeds"][self.seed[encoding]]
    if epochs >= self.full:
      return float(run["verification_accuracy"])
    return float(run["epochs"][epochs - 1][PAIR_KEY])


def replay(table: Table, name: str, budget: int, seed: int, max_asks: int = 20) -> float:
  """The mean accuracy of the architecture `name` picks after `budget` full trainings (asks
  of trained architectures are answered for free, up to max_asks x budget asks)."""
  return float(table.mean[table.index[pick(table, name, budget, seed, max_asks)]])


def pick(table: Table, name: str, budget: int, seed: int, max_asks: int = 20) -> tuple:
  """The encoding `name` picks after `budget` full trainings (replay)."""
  trainings = Trainings(table, np.random.default_rng([seed, 1]))
  proposer = make_strategy(table, name, seed, tried=trainings.epochs)
  for _ in range(max_asks * budget):
    if trainings.spent + 1 > budget + 1e-9:
      break
    encoding = proposer.ask()
    proposer.tell(encoding, trainings.train(encoding, trainings.full))
  return tuple(proposer.best()[0])


def replay_halving(table: Table, name: str, budget: int, seed: int, eta: int = 3,
                   max_asks: int = 20) -> float:
  """The mean accuracy of the pick of `name` under successive halving (module doc)."""
  return float(table.mean[table.index[pick_halving(table, name, budget, seed, eta, max_asks)]])


def pick_halving(table: Table, name: str, budget: int, seed: int, eta: int = 3,
                 max_asks: int = 20) -> tuple:
  """The encoding `name` picks under successive halving (module doc)."""
  trainings = Trainings(table, np.random.default_rng([seed, 1]))
  proposer = make_strategy(table, name, seed, tried=trainings.epochs)
  full = trainings.full
  rungs = [(eta * eta, 1), (eta, eta), (1, full)]
  bracket = sum(n * e for n, e in rungs) / full  # its cost when every candidate is new
  finals, asks = [], 0
  while trainings.spent + bracket <= budget + 1e-9 and asks < max_asks * budget:
    alive = [proposer.ask() for _ in range(rungs[0][0])]
    asks += len(alive)
    for position, (_, epochs) in enumerate(rungs):
      scores = [(trainings.train(a, epochs), a) for a in alive]
      for score, encoding in scores:
        proposer.tell(encoding, score)
      if epochs == full:
        finals += scores
        break
      next_keep = rungs[position + 1][0]
      alive = [a for _, a in sorted(scores, key=lambda item: -item[0])[:next_keep]]
  while trainings.spent + 1 <= budget + 1e-9 and asks < max_asks * budget:
    encoding = proposer.ask()  # what no whole bracket fits: full trainings
    asks += 1
    score = trainings.train(encoding, full)
    proposer.tell(encoding, score)
    finals.append((score, encoding))
  return tuple(max(finals, key=lambda item: item[0])[1])


def replay_row(table: Table, name: str, budget: int, replays: int) -> dict:
  """`name` (a strategy, "+sh": with successive halving) replayed `replays` times at
  `budget`: the mean of the pick's accuracy, its 95 % interval, the regret, and the
  architectures picked most often (id and share of the replays: what one search would
  most likely return)."""
  base, halving = (name[:-3], True) if name.endswith("+sh") else (name, False)
  run = pick_halving if halving else pick
  picks = [run(table, base, budget, seed) for seed in range(replays)]
  found = np.array([table.mean[table.index[p]] for p in picks])
  half = 1.96 * found.std(ddof=1) / np.sqrt(replays)
  counts = collections.Counter(table.name(p) for p in picks)
  return {"strategy": name, "budget": budget, "mean": float(found.mean()),
          "ci95": [float(found.mean() - half), float(found.mean() + half)],
          "regret": float(table.mean.max() - found.mean()),
          "picks": [{"id": i, "share": n / replays} for i, n in counts.most_common(3)]}


def replay_table(table: Table, names, budgets, replays: int, out: str | None = None,
                 on_row=None, workers: int = 1) -> list[dict]:
  """Every strategy x budget (replay_row), in the order given. With `out`, each row is saved
  as it is done and a rerun keeps the saved rows of the same table and replay count (the RL
  controllers take most of an hour here). `workers` > 1 replays the missing rows in that
  many processes (a row is the same whichever process replays it: its replays are seeded)."""
  saved = {}
  if out:
    previous = runlog.read_json(out, default={}) or {}
    if previous.get("table") == table.fingerprint and previous.get("replays") == replays:
      saved = {(r["strategy"], r["budget"]): r for r in previous.get("rows", [])}
  cells = [(name, budget) for name in names for budget in budgets]
  missing = [cell for cell in cells if cell not in saved]

  def keep(row):
    saved[(row["strategy"], row["budget"])] = row
    if out:
      runlog.write_json(out, {"table": table.fingerprint, "replays": replays,
                              "rows": list(saved.values())})

  if workers > 1 and len(missing) > 1:
    context = multiprocessing.get_context("spawn")  # TensorFlow does not survive a fork
    with context.Pool(min(workers, len(missing))) as pool:
      for row in pool.imap_unordered(_replay_cell, [(table, name, budget, replays)
                                                    for name, budget in missing]):
        keep(row)
  rows = []
  for cell in cells:
    if cell not in saved:
      keep(replay_row(table, *cell, replays))
    rows.append(saved[cell])
    if on_row:
      on_row(saved[cell])
  return rows


def _replay_cell(job) -> dict:
  return replay_row(*job)


def score_columns_per_seed(table: Table) -> dict[str, np.ndarray]:
  """Cheap scores (higher = predicted better): [rows] for those that do not depend on a training seed (FLOPs, params),
  [rows, seeds] for those measured on a seed's run (jacob_cov at its initialisation, its
  first epochs' training loss and verification)."""
  out = {"flops": np.array([row["flops"] for row in table.rows], float),
         "params": np.array([row["params"] for row in table.rows], float)}
  per_seed = lambda value: np.array([[value(row, s) for s in table.seeds]  # noqa: E731
                                     for row in table.rows], float)
  if all("jacob_cov" in row for row in table.rows):
    out["jacob_cov"] = per_seed(lambda row, s: row["jacob_cov"][s])
  epochs = min(len(row["seeds"][s]["epochs"]) for row in table.rows for s in table.seeds)
  for k in sorted(k for k in {1, 2, 3, epochs // 2} if 0 < k <= epochs):
    out[f"minus_sum_train_loss_first_{k}_epochs"] = per_seed(
        lambda row, s, k=k: -sum(e["loss"] for e in row["seeds"][s]["epochs"][:k]))
    out[f"verification_after_{k}_epochs"] = per_seed(
        lambda row, s, k=k: row["seeds"][s]["epochs"][k - 1][PAIR_KEY])
  return out


def independent_tau(values: np.ndarray, accuracy: np.ndarray) -> float:
  """Kendall tau of a score against another run's accuracy, comparable with the seed
  ceiling (one seed's accuracy against another's): a per-seed score [rows, seeds] against
  the other seeds' final accuracies (mean over ordered pairs s != s'), since a score and
  the accuracy of the same run share that run's noise; a seed-free score [rows] against
  each seed's accuracy (mean over seeds)."""
  seeds = accuracy.shape[1]
  if values.ndim == 1:
    return float(np.mean([stats.kendalltau(values, accuracy[:, s])[0] for s in range(seeds)]))
  return float(np.mean([stats.kendalltau(values[:, s], accuracy[:, t])[0]
                        for s in range(seeds) for t in range(seeds) if s != t]))


def supernet_columns(table: Table, scores: dict) -> dict[str, np.ndarray]:
  """The supernet scores of bench_nas_supernet.py's file, one column per recipe and BatchNorm
  mode that scored every row of the table."""
  per_row = [scores.get("scores", {}).get(" ".join(str(int(v)) for v in row["encoding"]), {})
             for row in table.rows]
  columns = {}
  for recipe, mode in sorted({(r, m) for entry in per_row for r in entry for m in entry[r]}):
    if all(mode in entry.get(recipe, {}) for entry in per_row):
      columns[f"supernet {recipe}, BN {mode}"] = np.array(
          [entry[recipe][mode] for entry in per_row])
  return columns


def tau_table(table: Table, supernet_scores: dict | None = None) -> list[dict]:
  """Kendall tau of each cheap score against the mean stand-alone accuracy ("tau"), after
  the seed-to-seed tau (the ceiling the seed noise allows; with two seeds or more); with two
  seeds or more also "tau_independent" (independent_tau: against another run's accuracy,
  the figure to hold against the ceiling)."""
  rows = []
  several = len(table.seeds) > 1
  if several:
    ceiling = float(stats.kendalltau(table.accuracy[:, 0], table.accuracy[:, 1])[0])
    rows.append({"score": "seed 0 vs seed 1 (ceiling)", "tau": ceiling,
                 "tau_independent": ceiling})
  columns = dict(score_columns_per_seed(table), **supernet_columns(table, supernet_scores or {}))
  for name, values in columns.items():
    mean = values.mean(axis=1) if values.ndim == 2 else values
    row = {"score": name, "tau": float(stats.kendalltau(mean, table.mean)[0])}
    if several:
      row["tau_independent"] = independent_tau(values, table.accuracy)
    rows.append(row)
  return rows


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--table", default=os.path.join(ROOT, "bench", "data", "nas_table.json"))
  parser.add_argument("--replays", type=int, default=200)
  parser.add_argument("--budgets", default="10,20,40")
  names = [*proposers.PROPOSERS, *RL_STRATEGIES]
  parser.add_argument("--strategies", default=",".join(
      [*names, *(f"{name}+sh" for name in names)]))
  parser.add_argument("--out", default=os.path.join(ROOT, "bench", "data", "nas_replay.json"),
                      help="the replay rows, saved as they are done; a rerun resumes ('' : "
                           "none)")
  parser.add_argument("--workers", type=int, default=1,
                      help="processes replaying strategies side by side (one per core)")
  parser.add_argument("--supernet_scores",
                      default=os.path.join(ROOT, "bench", "data", "nas_supernet_scores.json"),
                      help="bench_nas_supernet.py score's file, for the tau table (if it exists)")
  args = parser.parse_args(argv)
  table_data = runlog.read_json(args.table)
  if table_data is None:
    raise SystemExit(f"--table={args.table}: no such file (bench_nas_table.py collect)")
  table = Table(table_data)
  spread = table.accuracy.std(axis=1, ddof=1).mean() if len(table.seeds) > 1 else float("nan")
  print(f"{args.table}: {len(table.rows)} architectures with seeds {table.seeds}; best mean "
        f"{table.mean.max():.4f}, spread (max - min) {table.mean.max() - table.mean.min():.4f}, "
        f"mean seed std {spread:.4f}")
  print("\n| strategy | k | expected best accuracy | 95 % interval | regret | most frequent pick |")
  print("|---|---|---|---|---|---|", flush=True)
  replay_table(table, args.strategies.split(","), [int(b) for b in args.budgets.split(",")],
               args.replays, out=args.out or None, workers=args.workers, on_row=lambda row: print(
                   f"| {row['strategy']} | {row['budget']} | {row['mean']:.4f} | "
                   f"[{row['ci95'][0]:.4f}, {row['ci95'][1]:.4f}] | {row['regret']:.4f} | "
                   f"{row['picks'][0]['id']} ({row['picks'][0]['share']:.0%}) |",
                   flush=True))
  supernet = runlog.read_json(args.supernet_scores, default=None) if args.supernet_scores else None
  print("\n| score | Kendall tau vs mean stand-alone accuracy | vs another run's accuracy |")
  print("|---|---|---|")
  for row in tau_table(table, supernet):
    other = f"{row['tau_independent']:.3f}" if "tau_independent" in row else ""
    print(f"| {row['score']} | {row['tau']:.3f} | {other} |")


if __name__ == "__main__":
  main()
