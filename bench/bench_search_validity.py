"""Does the search beat random search? Resolution, ranking quality, controller vs random.

    # 1. The benchmark's own resolution: one architecture trained from scratch over seeds.
    python bench/bench_search_validity.py resolution --flagfile=flags/validity_synthetic.cfg \\
        --runs_root=runs/validity --seeds=0,1,2
    # 2. Ranking quality of the shared weights: Kendall tau between the shared-weight score
    #    (classification and verification) and stand-alone verification over N architectures.
    python bench/bench_search_validity.py tau --flagfile=flags/validity_synthetic.cfg \\
        --runs_root=runs/validity --num_archs=12
    # 3. Controller vs random search at equal budget, top-3 of each trained from scratch.
    python bench/bench_search_validity.py compare --flagfile=flags/validity_synthetic.cfg \\
        --runs_root=runs/validity --seeds=0,1,2
    # 4. The ceiling the noise puts on tau (no training: reads 1.'s and 2.'s result files).
    python bench/bench_search_validity.py ceiling --runs_root=runs/validity

Every training is `python -m enas_face.main` in its own folder under RUNS_ROOT (a
finished run is reused, an interrupted one resumes), so the benchmark can be stopped
and restarted. Flags after `--` go to every run. Stand-alone accuracy is the 10-fold
verification accuracy on the flagfile's held-out pairs; the data are fixed by
--data_seed in the flagfile while --seed varies the training.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from enas_face import runlog  # noqa: E402
from enas_face import spaces  # noqa: E402
from passthrough import read_flagfile, split_passthrough  # noqa: E402  (bench/ is sys.path[0])


def run_main(args: list[str], run_dir: str, done_file: str) -> bool:
  """`python -m enas_face.main ARGS --run_dir=RUN_DIR` unless RUN_DIR/DONE_FILE exists."""
  if os.path.exists(os.path.join(run_dir, done_file)):
    return True
  command = [sys.executable, "-m", "enas_face.main", *args, f"--run_dir={run_dir}"]
  print(" ".join(command), flush=True)
  tic = time.perf_counter()
  os.makedirs(run_dir, exist_ok=True)
  with open(os.path.join(run_dir, "bench_stderr.log"), "w") as err:
    result = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, text=True)
  if result.returncode:
    print(f"  failed (exit {result.returncode}); see {run_dir}/bench_stderr.log", flush=True)
    return False
  print(f"  {time.perf_counter() - tic:.0f} s", flush=True)
  return True


def arc_tag(arc_string: str) -> str:
  return arc_string.replace(" ", "")


def standalone(flagfile: str, runs_root: str, arc_string: str, seed: int, extra: list[str]):
  """Metrics of `arc_string` trained from scratch with training seed `seed`, or None."""
  run_dir = os.path.join(runs_root, "standalone", f"{arc_tag(arc_string)}_s{seed}")
  ok = run_main([f"--flagfile={flagfile}", "--mode=fixed", f"--arc={arc_string}", f"--seed={seed}",
                 *extra], run_dir, runlog.METRICS)
  return runlog.read_json(os.path.join(run_dir, runlog.METRICS)) if ok else None


def default_arc(flagfile: str, runs_root: str) -> str:
  """The space's default sample under the flagfile's model settings."""
  from enas_face.config import ModelConfig  # pylint: disable=import-outside-toplevel
  values = read_flagfile(flagfile)
  model = ModelConfig(num_layers=int(values.get("num_layers", 5)))
  return spaces.get("enas_macro").to_string(spaces.get("enas_macro").default(model))


def mean_std(values) -> tuple[float, float]:
  values = [v for v in values if v is not None]
  return (float(np.mean(values)), float(np.std(values))) if values else (float("nan"), float("nan"))


def resolution(args, extra) -> dict:
  """One architecture over training seeds: spread of stand-alone verification accuracy,
  and the mean 10-fold std of one run (the pairs' own resolution)."""
  arc = args.arc or default_arc(args.flagfile, args.runs_root)
  runs = [standalone(args.flagfile, args.runs_root, arc, s, extra) for s in parse_ints(args.seeds)]
  accs = [r["verification_accuracy"] for r in runs if r]
  fold_stds = [r["verification_std"] for r in runs if r]
  result = {"arc": arc, "seeds": parse_ints(args.seeds), "verification_accuracy": accs,
            "seed_mean": mean_std(accs)[0], "seed_std": mean_std(accs)[1],
            "fold_std_mean": mean_std(fold_stds)[0],
            "num_pairs": runs[0]["num_pairs"] if runs and runs[0] else None,
            "standard_error_of_a_run": mean_std(fold_stds)[0] / np.sqrt(10)}
  print(f"resolution of {arc}: stand-alone verification {result['seed_mean']:.4f} +- "
        f"{result['seed_std']:.4f} over seeds {accs}; 10-fold std {result['fold_std_mean']:.4f} "
        f"(standard error of one run's mean {result['standard_error_of_a_run']:.4f}, "
        f"{result['num_pairs']} pairs)")
  return result


def parse_ints(text: str) -> list[int]:
  return [int(t) for t in text.split(",") if t.strip()]


def shared_scores(search_dir: str, arcs: list[str]) -> dict[str, dict[str, float]]:
  """Classification and verification scores of `arcs` with the shared weights of a finished
  one-shot search (its last checkpoint), on the whole reward data of that search."""
  from enas_face import distribute  # pylint: disable=import-outside-toplevel
  from enas_face.search import loop as search  # pylint: disable=import-outside-toplevel
  from enas_face.search import strategies  # pylint: disable=import-outside-toplevel
  from enas_face.data import load_dataset  # pylint: disable=import-outside-toplevel
  from enas_face.training import checkpoints, loop  # pylint: disable=import-outside-toplevel

  config = spaces.load_config(os.path.join(search_dir, runlog.CONFIG))
  dataset, reward = search.reward_data(config, load_dataset(config.data))
  placement = distribute.make_placement("default")
  steps = loop.steps_per_epoch(config.train.batch_size, len(dataset.train), 1)
  one_shot = strategies.OneShot(config, spaces.of(config.model), dataset, reward, placement, steps)
  checkpoints.restore(checkpoints.latest(checkpoints.checkpoint_dir(search_dir)),
                      **one_shot.trackables())
  space = spaces.of(config.model)
  # Diagnostic only (never used to select): the same shared weights scored on the
  # evaluation pairs, 5-10x the reward pairs, to separate reward noise from ranking bias.
  diagnostic = dataclasses.replace(reward, metric="verification", pairs=dataset.pairs)
  out = {}
  for arc in arcs:
    choices = np.array(space.encode(space.from_string(arc, config.model)), np.int32)
    row = {}
    for name, data in (("classification", dataclasses.replace(reward, metric="classification")),
                       ("verification", dataclasses.replace(reward, metric="verification")),
                       ("verification_eval_pairs", diagnostic)):
      one_shot.reward = data
      row[name] = one_shot.score(choices, whole=True)
    out[arc] = row
  return out


def trial_scores(search_dir: str, arcs: list[str], trial_epochs: int, runs_root: str) -> dict:
  """The multi_trial strategy's score of each arc (trained from scratch for `trial_epochs`
  on the search's training data, scored on its reward pairs), with that search's settings."""
  from enas_face import distribute  # pylint: disable=import-outside-toplevel
  from enas_face.search import loop as search  # pylint: disable=import-outside-toplevel
  from enas_face.search import strategies  # pylint: disable=import-outside-toplevel
  from enas_face.data import load_dataset  # pylint: disable=import-outside-toplevel

  config = spaces.load_config(os.path.join(search_dir, runlog.CONFIG))
  config = dataclasses.replace(
      config, run_dir=os.path.join(runs_root, f"trials_{trial_epochs}ep"),
      search=dataclasses.replace(config.search, strategy=strategies.MultiTrial.name,
                                trial_epochs=trial_epochs))
  os.makedirs(config.run_dir, exist_ok=True)
  dataset, reward = search.reward_data(config, load_dataset(config.data))
  trials = strategies.MultiTrial(config, spaces.of(config.model), dataset, reward,
                                 distribute.make_placement("default"))
  space = spaces.of(config.model)
  choices = np.array([space.encode(space.from_string(a, config.model)) for a in arcs], np.int32)
  return dict(zip(arcs, trials.score_many(choices, 0)))


def kendall_tau(x, y) -> float:
  from scipy import stats  # pylint: disable=import-outside-toplevel
  return float(stats.kendalltau(x, y).statistic)


def tau(args, extra) -> dict:
  """Kendall tau between shared-weight scores and stand-alone verification over N archs."""
  from enas_face.config import ModelConfig  # pylint: disable=import-outside-toplevel
  values = read_flagfile(args.flagfile)
  model = ModelConfig(num_layers=int(values.get("num_layers", 5)))
  space = spaces.get("enas_macro")
  rng = np.random.default_rng(args.arc_seed)
  arcs = []
  while len(arcs) < args.num_archs:  # distinct uniform draws
    arc = space.to_string(space.sample_uniform(model, rng))
    if arc not in arcs:
      arcs.append(arc)
  standalone_acc = {}
  for arc in arcs:
    metrics = standalone(args.flagfile, args.runs_root, arc, 0, extra)
    standalone_acc[arc] = metrics["verification_accuracy"] if metrics else None
  # The shared weights: random search's (uniform training of every architecture), the same
  # run as `compare`'s seed-0 random search; with --wait, the one `compare` is running.
  search_dir = os.path.join(args.runs_root, "search_random_s0")
  while args.wait and not os.path.exists(os.path.join(search_dir, runlog.SEARCH_SUMMARY)):
    time.sleep(30)
  run_main([f"--flagfile={args.flagfile}", "--mode=search", "--controller=random",
            "--seed=0", *extra], search_dir, runlog.SEARCH_SUMMARY)
  scores = shared_scores(search_dir, arcs)
  for epochs in parse_ints(args.trial_epochs):
    for arc, value in trial_scores(search_dir, arcs, epochs, args.runs_root).items():
      scores[arc][f"trial_{epochs}ep"] = value
  done = [a for a in arcs if standalone_acc[a] is not None]
  truth = [standalone_acc[a] for a in done]
  result = {"archs": [{"arc": a, "standalone_verification": standalone_acc[a], **scores[a]}
                      for a in arcs],
            "tau_classification": kendall_tau([scores[a]["classification"] for a in done], truth),
            "tau_verification": kendall_tau([scores[a]["verification"] for a in done], truth),
            "tau_verification_eval_pairs": kendall_tau(
                [scores[a]["verification_eval_pairs"] for a in done], truth),
            "standalone_spread": mean_std(truth),
            **{f"tau_trial_{e}ep": kendall_tau([scores[a][f"trial_{e}ep"] for a in done], truth)
               for e in parse_ints(args.trial_epochs)},
            "num_archs": len(done), "search_dir": search_dir}
  print(f"Kendall tau over {len(done)} architectures (shared-weight score vs stand-alone "
        f"verification): classification {result['tau_classification']:.3f}, verification "
        f"{result['tau_verification']:.3f}")
  for row in sorted(result["archs"], key=lambda r: -(r["standalone_verification"] or 0)):
    print(f"  {row['arc']}  stand-alone {row['standalone_verification']:.4f}  shared: "
          f"classification {row['classification']:.4f}  verification {row['verification']:.4f}  "
          f"(eval pairs {row['verification_eval_pairs']:.4f})")
  return result


def tau_noise_ceiling(accuracies, seed_std: float, draws: int = 20000, seed: int = 0) -> dict:
  """Expected Kendall tau that training noise alone allows on these architectures.

  Model: a run's accuracy y_i = mu_i + e, e ~ N(0, seed_std^2). The true mu_i are estimated
  from the measured x_i by shrinking their spread, mu_i = xbar + k (x_i - xbar) with
  k = sqrt(max(0, 1 - seed_std^2 / s_x^2)) (s_x^2: sample variance of x), so that
  Var(mu) + seed_std^2 = s_x^2. Monte Carlo over `draws`:
    perfect_proxy = E[tau(mu, y)]   (a proxy that knows mu exactly, against one run)
    retest        = E[tau(y, y')]   (two independent runs of every architecture)
  Both are 0 when the measured spread is all noise (k = 0: nothing to rank).
  """
  from scipy import stats  # pylint: disable=import-outside-toplevel
  x = np.asarray(accuracies, np.float64)
  shrink = float(np.sqrt(max(0.0, 1.0 - seed_std ** 2 / x.var(ddof=1))))
  mu = x.mean() + shrink * (x - x.mean())
  if shrink < 1e-6:  # (up to rounding)
    return {"perfect_proxy": 0.0, "retest": 0.0, "shrink": 0.0, "true_spread": 0.0,
            "seed_std": seed_std, "num_archs": len(x), "draws": 0}
  rng = np.random.default_rng(seed)
  perfect, retest = [], []
  for _ in range(draws):
    y1, y2 = mu + rng.normal(0.0, seed_std, (2, len(x)))
    perfect.append(stats.kendalltau(mu, y1).statistic)
    retest.append(stats.kendalltau(y1, y2).statistic)
  return {"perfect_proxy": float(np.mean(perfect)), "retest": float(np.mean(retest)),
          "shrink": shrink, "true_spread": float(mu.std(ddof=1)), "seed_std": seed_std,
          "num_archs": len(x), "draws": draws}


def ceiling(args, extra) -> dict:
  """tau_noise_ceiling for the architectures of RUNS_ROOT/tau.json, with the training-seed
  std of RUNS_ROOT/resolution.json (both written by the commands above)."""
  del extra
  measured = runlog.read_json(os.path.join(args.runs_root, "tau.json"))
  spread = runlog.read_json(os.path.join(args.runs_root, "resolution.json"))
  accs = [a["standalone_verification"] for a in measured["archs"]
          if a["standalone_verification"] is not None]
  # The sample std over seeds (ddof=1): the population std of 3 seeds underestimates it.
  seed_std = float(np.std(spread["verification_accuracy"], ddof=1))
  result = tau_noise_ceiling(accs, seed_std, args.draws)
  print(f"{len(accs)} architectures, stand-alone spread {np.std(accs, ddof=1):.4f}, training-"
        f"seed std {seed_std:.4f} ({len(spread['verification_accuracy'])} seeds): a proxy that "
        f"knew the true accuracies would reach tau {result['perfect_proxy']:.3f} against one "
        f"stand-alone run; two stand-alone runs agree at tau {result['retest']:.3f}")
  return result


def compare(args, extra) -> dict:
  """Controller vs random search at equal budget, per seed: the top-3 of each trained from
  scratch (training seed 0 for all), mean and best stand-alone verification accuracy."""
  per_seed = []
  for seed in parse_ints(args.seeds):
    row = {"seed": seed}
    for controller in ("enas", "random"):
      search_dir = os.path.join(args.runs_root, f"search_{controller}_s{seed}")
      ok = run_main([f"--flagfile={args.flagfile}", "--mode=search", f"--controller={controller}",
                     f"--seed={seed}", *extra], search_dir, runlog.SEARCH_SUMMARY)
      if not ok:
        row[controller] = None
        continue
      ranked = runlog.read_json(os.path.join(search_dir, runlog.ARCS_RANKED))["architectures"]
      top = [e["encoding"] for e in ranked[:args.top_k]]
      accs = []
      for arc in top:
        metrics = standalone(args.flagfile, args.runs_root, arc, 0, extra)
        accs.append(metrics["verification_accuracy"] if metrics else None)
      done = [a for a in accs if a is not None]
      summary = runlog.read_json(os.path.join(search_dir, runlog.SEARCH_SUMMARY))
      row[controller] = {"top": top, "standalone_verification": accs,
                         "mean": float(np.mean(done)) if done else None,
                         "best": float(np.max(done)) if done else None,
                         "search_seconds": summary.get("search_wall_seconds_this_invocation")}
    per_seed.append(row)
  complete = [r for r in per_seed if r.get("enas") and r.get("random")
              and r["enas"]["mean"] is not None and r["random"]["mean"] is not None]
  mean_gap = [r["enas"]["mean"] - r["random"]["mean"] for r in complete]
  best_gap = [r["enas"]["best"] - r["random"]["best"] for r in complete]
  result = {"per_seed": per_seed, "seeds_enas_mean_higher": int(sum(g > 0 for g in mean_gap)),
            "seeds_enas_best_higher": int(sum(g > 0 for g in best_gap)),
            "seeds": len(complete), "mean_gap": mean_std(mean_gap), "best_gap": mean_std(best_gap)}
  if len(complete) >= 2:
    from scipy import stats  # pylint: disable=import-outside-toplevel
    result["paired_t_p_mean"] = float(stats.ttest_rel([r["enas"]["mean"] for r in complete],
                                                      [r["random"]["mean"] for r in complete]).pvalue)
  print("seed  controller top-3 (mean / best)   random top-3 (mean / best)")
  for r in complete:
    print(f"{r['seed']:>4}  {r['enas']['mean']:.4f} / {r['enas']['best']:.4f}            "
          f"{r['random']['mean']:.4f} / {r['random']['best']:.4f}")
  print(f"controller's top-3 mean higher in {result['seeds_enas_mean_higher']} of {len(complete)} "
        f"seeds (gap {result['mean_gap'][0]:+.4f} +- {result['mean_gap'][1]:.4f}); best higher "
        f"in {result['seeds_enas_best_higher']} (gap {result['best_gap'][0]:+.4f})")
  return result


def main() -> None:
  argv, extra = split_passthrough(sys.argv[1:])
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("command", choices=("resolution", "tau", "compare", "ceiling"))
  parser.add_argument("--flagfile", default="flags/validity_synthetic.cfg")
  parser.add_argument("--runs_root", default="runs/validity")
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--arc", default="", help="resolution: the architecture (default: the "
                      "space's default)")
  parser.add_argument("--num_archs", type=int, default=12)
  parser.add_argument("--trial_epochs", default="", help="tau: also the multi_trial proxy's "
                      "score after these epochs from scratch, comma-separated (e.g. 3)")
  parser.add_argument("--arc_seed", type=int, default=1)
  parser.add_argument("--top_k", type=int, default=3)
  parser.add_argument("--wait", action="store_true", help="tau: wait for the seed-0 random "
                      "search that a concurrent `compare` is running instead of running it")
  parser.add_argument("--draws", type=int, default=20000, help="ceiling: Monte Carlo draws")
  parser.add_argument("--tag", default="", help="name of the result file: RUNS_ROOT/<command>"
                      "<tag>.json")
  args = parser.parse_args(argv)
  args.flagfile = os.path.abspath(args.flagfile)
  args.runs_root = os.path.abspath(args.runs_root)
  commands = {"resolution": resolution, "tau": tau, "compare": compare, "ceiling": ceiling}
  result = commands[args.command](args, extra)
  result["command"] = " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
  runlog.write_json(os.path.join(args.runs_root, f"{args.command}{args.tag}.json"), result)


if __name__ == "__main__":
  main()
