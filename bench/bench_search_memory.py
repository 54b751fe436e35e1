"""Resident memory of a long search: does it stay flat after warm-up?

    python bench/bench_search_memory.py [--steps=1000 --json=memory.json]

Runs the real `search.search()` in this process on synthetic 16x16 faces with a
config built in code (batch 8, a new architecture every child step, several
controller samples per epoch, each new architecture's latency measured by the
LatencyMeter, a checkpoint per epoch). Every 100 child steps (the train step is
wrapped to count them) it reads the resident set size from /proc/self/statm.
The first `--warmup` samples (tracing, TF's allocator pools, the latency
probes' first traces) are discarded; over the rest it prints the least-squares
slope in MB per 100 child steps and the total growth. A leak from retracing per
architecture, from LatencyMeter models that are never freed or from
auto-numbered layers would show as a steady positive slope.

Measured (TF 2.21, 16x16, 4 layers, 6 rewards per epoch): the train step is
traced once; the one growth is TF's eager kernel cache, ~33 KB per newly
measured architecture (+0.65 MB per 100 child steps with --clear_every=100000),
which search.py bounds by clearing the cache every KERNEL_CACHE_CLEAR_EVERY
new measurements (--clear_every=60: flat).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
  """Resident set size of this process (second field of /proc/self/statm, in pages)."""
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * PAGE_BYTES / 2**20


def slope_per_100(steps: list[int], rss: list[float]) -> float:
  """Least-squares slope of RSS against child steps, in MB per 100 steps."""
  if len(steps) < 2:
    return float("nan")
  return float(np.polyfit(np.asarray(steps, float), np.asarray(rss, float), 1)[0] * 100)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=1000, help="child training steps (about)")
  parser.add_argument("--every", type=int, default=100, help="sample RSS every N child steps")
  parser.add_argument("--warmup", type=int, default=3, help="samples discarded as warm-up")
  parser.add_argument("--num_layers", type=int, default=4)
  parser.add_argument("--controller_steps", type=int, default=2)
  parser.add_argument("--controller_samples", type=int, default=3)
  parser.add_argument("--clear_every", type=int, default=0,
                      help="search.KERNEL_CACHE_CLEAR_EVERY for this run (0: the module's, "
                      "500; a value above the number of measurements shows the raw growth)")
  parser.add_argument("--json", default="", help="also write the figures to this file")
  args = parser.parse_args()

  import tensorflow as tf
  from absl import logging
  import keras

  from enas_face.search import loop as search
  from enas_face.spaces import enas_macro
  from enas_face.training import step as train_lib
  from enas_face.config import (DataConfig, EvalConfig, ModelConfig, RunConfig, SearchConfig,
                                TrainConfig)
  from enas_face.data import synthetic

  tf.get_logger().setLevel("ERROR")
  logging.set_verbosity(logging.WARNING)
  keras.utils.set_random_seed(0)
  keras.config.disable_interactive_logging()  # progress bars -> absl INFO, silenced here
  identities, batch = 10, 8
  dataset = synthetic.make_synthetic_dataset(
      num_identities=identities, images_per_identity=30, num_heldout_identities=4,
      heldout_images_per_identity=5, num_pairs=20, image_size=16, seed=0)
  steps_per_epoch = len(dataset.train) // batch
  epochs = max(2, -(-args.steps // steps_per_epoch))
  run_dir = tempfile.mkdtemp(prefix="bench_search_memory_")
  model = ModelConfig(image_size=16, num_layers=args.num_layers, num_reductions=1,
                      base_filters=8, embedding_dim=16)
  config = RunConfig(
      mode="search", run_dir=run_dir, arc=enas_macro.default_architecture(args.num_layers),
      model=model, data=DataConfig(image_size=16),
      train=TrainConfig(epochs=epochs, batch_size=batch, warmup_epochs=1, keep_checkpoints=2),
      eval=EvalConfig(batch_size=64),
      search=SearchConfig(epochs=epochs, controller_steps=args.controller_steps,
                          controller_samples=args.controller_samples, controller_hidden=32,
                          latency_warmup=1, latency_repeats=3, val_batch_size=batch,
                          num_final_samples=4, num_ranked=2))

  samples: list[tuple[int, float, float]] = []  # (child step, RSS MB, seconds)
  tic = time.perf_counter()
  real_make_train_step = train_lib.make_train_step
  traced = []

  def counting_make_train_step(*a, **k):
    step = real_make_train_step(*a, **k)
    traced.append(step)
    count = [0]

    def counted(*step_args):
      out = step(*step_args)
      count[0] += 1
      if count[0] % args.every == 0:
        samples.append((count[0], rss_mb(), time.perf_counter() - tic))
        print(f"step {count[0]:6d}  RSS {samples[-1][1]:8.1f} MB  {samples[-1][2]:6.0f} s",
              flush=True)
      return out

    return counted

  search.train_lib.make_train_step = counting_make_train_step
  if args.clear_every:
    search.KERNEL_CACHE_CLEAR_EVERY = args.clear_every
  print(f"search: {epochs} epochs x {steps_per_epoch} child steps, "
        f"{args.controller_steps}x{args.controller_samples} rewards per epoch, "
        f"{args.num_layers} layers ({enas_macro.count_architectures(args.num_layers)} "
        f"architectures); run folder {run_dir} (deleted at the end)", flush=True)
  start_rss = rss_mb()
  summary = search.search(config, dataset)
  search.train_lib.make_train_step = real_make_train_step

  kept = samples[args.warmup:]
  steps = [s for s, _, _ in kept]
  rss = [r for _, r, _ in kept]
  report = {
      "child_steps": samples[-1][0] if samples else 0, "every": args.every,
      "warmup_samples": args.warmup, "rss_mb": [[s, round(r, 1)] for s, r, _ in samples],
      "rss_before_search_mb": round(start_rss, 1),
      "slope_mb_per_100_steps": slope_per_100(steps, rss),
      "growth_after_warmup_mb": (rss[-1] - rss[0]) if rss else float("nan"),
      "growth_total_mb": samples[-1][1] - start_rss if samples else float("nan"),
      "train_step_traces": sum(int(t.experimental_get_tracing_count()) for t in traced),
      "distinct_architectures_rewarded": summary["distinct_architectures"],
      "rewarded_samples": summary["rewarded_samples"],
      "latency_measured": summary["latency_measured"],
      "seconds": time.perf_counter() - tic,
      "kernel_cache_clear_every": search.KERNEL_CACHE_CLEAR_EVERY,
  }
  print(f"RSS before the search {start_rss:.0f} MB; after warm-up ({args.warmup} samples) "
        f"{rss[0] if rss else float('nan'):.0f} -> {rss[-1] if rss else float('nan'):.0f} MB")
  print(f"growth: {report['slope_mb_per_100_steps']:+.2f} MB per 100 child steps "
        f"(least squares over {len(kept)} samples), {report['growth_after_warmup_mb']:+.1f} MB "
        f"after warm-up, {report['growth_total_mb']:+.1f} MB in total")
  print(f"{report['child_steps']} child steps, {report['rewarded_samples']} rewards, "
        f"{report['distinct_architectures_rewarded']} distinct architectures, "
        f"{report['latency_measured']} latency measurements (kernel cache cleared every "
        f"{search.KERNEL_CACHE_CLEAR_EVERY}), train step traced {report['train_step_traces']}x, "
        f"{report['seconds']:.0f} s")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(report, f, indent=2)
  shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
  main()
