"""How well do the cheap cost models predict latency? Latency table, FLOPs, parameters.

    python bench/bench_cost_models.py --num_archs=50 --output=runs/bench_cost_models.json \\
        -- --flagfile=flags/demo.cfg
    python bench/bench_cost_models.py --arc_file=runs/search/arcs_ranked.json \\
        --output=runs/bench_cost_models_top.json -- --flagfile=flags/demo.cfg

For the model settings after `--` (enas_face flags; default: the flag defaults), on
--num_archs random architectures (seeded):
  1. builds the latency table for tf.function and for TFLite (LiteRT, 1 thread);
  2. measures every architecture whole with the same runtime (batch 1, median of
     --repeats calls after --warmup);
  3. reports, per runtime, the table's prediction against the measurement (Spearman rho,
     share within +-10 %, mean relative error), a second measurement of every
     architecture against the first (the ceiling of any predictor), and how well FLOPs
     and parameters alone rank the measured latency (Spearman rho);
  4. times one prediction of each cheap model against one measurement.
Run it on an otherwise idle machine: every figure is a wall-clock time.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402
from scipy import stats  # noqa: E402

from enas_face import costs  # noqa: E402
from enas_face.costs import factory as cost_factory  # noqa: E402
from enas_face import flags as enas_flags  # noqa: E402
from enas_face import runlog  # noqa: E402
from enas_face.costs import latency_table  # noqa: E402
from enas_face import spaces  # noqa: E402
from passthrough import split_passthrough  # noqa: E402  (bench/ is sys.path[0])


def per_call_seconds(function, samples, rounds: int = 20) -> float:
  """Mean wall time of one call of `function` over `samples`, `rounds` passes."""
  tic = time.perf_counter()
  for _ in range(rounds):
    for sample in samples:
      function(sample)
  return (time.perf_counter() - tic) / (rounds * len(samples))


def make_meter(runtime: str, model_config, args) -> costs.CostModel:
  """The whole-model latency of `runtime` (tf.function or LiteRT), batch 1."""
  return cost_factory.make_cost_model(latency_table.WHOLE_MODEL_COST[runtime], model_config,
                               warmup=args.warmup, repeats=args.repeats)


def main() -> None:
  argv, model_flags = split_passthrough(sys.argv[1:])
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--num_archs", type=int, default=50)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--warmup", type=int, default=10)
  parser.add_argument("--repeats", type=int, default=50)
  parser.add_argument("--runtimes", default="tf_function,tflite")
  parser.add_argument("--output", default="runs/bench_cost_models.json")
  parser.add_argument("--arc_file", default="", help="the architectures of this file (a "
                      "sample list or a search's arcs_ranked.json) instead of random ones")
  args = parser.parse_args(argv)
  flags.FLAGS(["bench", "--mode=search", *model_flags])
  model_config = enas_flags.config_from_flags(flags.FLAGS).model
  space = spaces.of(model_config)
  rng = np.random.default_rng(args.seed)
  samples = []
  if args.arc_file:  # e.g. a search's ranking: its architectures instead of random ones
    samples = list(spaces.load_samples(args.arc_file, space, model_config))
    args.num_archs = len(samples)
  while len(samples) < args.num_archs:  # distinct uniform draws
    sample = space.sample_uniform(model_config, rng)
    if all(space.to_string(sample) != space.to_string(s) for s in samples):
      samples.append(sample)
  flops_model = cost_factory.make_cost_model("flops", model_config)
  params_model = cost_factory.make_cost_model("params", model_config)
  flops = [flops_model(s) for s in samples]
  params = [params_model(s) for s in samples]
  result = {"model": model_config.__dict__, "num_archs": args.num_archs, "seed": args.seed,
            "warmup": args.warmup, "repeats": args.repeats, "runtimes": {},
            "command": " ".join(["bench/bench_cost_models.py", *sys.argv[1:]])}
  print(f"{args.num_archs} architectures of {space.name}, image {model_config.image_size}, "
        f"{model_config.num_layers} layers, base {model_config.base_filters}")
  for runtime in args.runtimes.split(","):
    tic = time.perf_counter()
    table = latency_table.build_table(model_config, runtime, args.warmup, args.repeats)
    meter = make_meter(runtime, model_config, args)
    whole = [meter(s) for s in samples]
    # The ceiling of any predictor: the same architectures measured again by a fresh meter
    # (in reverse order, so slow drifts of the machine do not line up).
    again = make_meter(runtime, model_config, args)
    retest = [again(s) for s in reversed(samples)][::-1]
    predicted = [latency_table.predict(table, space.cost_modules(model_config, s))
                 for s in samples]
    row = {"table": latency_table.prediction_error(predicted, whole),
           "retest": latency_table.prediction_error(retest, whole),
           "flops_spearman": float(stats.spearmanr(flops, whole).statistic),
           "params_spearman": float(stats.spearmanr(params, whole).statistic),
           "measured_ms_mean": float(np.mean(whole)), "measured_ms_min": float(np.min(whole)),
           "measured_ms_max": float(np.max(whole)),
           "table_build_seconds": table["build_seconds"], "overhead_ms": table["overhead_ms"],
           "seconds_per_measurement": meter.seconds / max(meter.evaluations, 1),
           "wall_seconds": time.perf_counter() - tic,
           "per_arch": [{"arc": space.to_string(s), "measured_ms": w, "remeasured_ms": w2,
                         "predicted_ms": p, "flops": f}
                        for s, w, w2, p, f in zip(samples, whole, retest, predicted, flops)]}
    lut = latency_table.TableLatency(model_config, table=table)
    row["seconds_per_table_prediction"] = per_call_seconds(lut, samples)
    result["runtimes"][runtime] = row
    error = row["table"]
    print(f"\n{runtime}: measured {row['measured_ms_min']:.2f}-{row['measured_ms_max']:.2f} ms "
          f"(mean {row['measured_ms_mean']:.2f}); table of {len(table['modules'])} modules built "
          f"in {row['table_build_seconds']:.0f} s")
    print(f"  table vs measured: Spearman {error['spearman']:.3f}, within +-10% "
          f"{100 * error['within_10pct']:.0f}%, mean |error| "
          f"{100 * error['mean_abs_rel_error']:.1f}%, max {100 * error['max_abs_rel_error']:.1f}%")
    print(f"  a second measurement vs the first (the ceiling): Spearman "
          f"{row['retest']['spearman']:.3f}, within +-10% {100 * row['retest']['within_10pct']:.0f}%"
          f", mean |difference| {100 * row['retest']['mean_abs_rel_error']:.1f}%")
    print(f"  FLOPs vs measured: Spearman {row['flops_spearman']:.3f}; params: "
          f"{row['params_spearman']:.3f}")
    print(f"  one prediction {1e6 * row['seconds_per_table_prediction']:.1f} us; one "
          f"measurement {row['seconds_per_measurement']:.2f} s")
  if {"tf_function", "tflite"} <= set(result["runtimes"]):
    tf_ms = [r["measured_ms"] for r in result["runtimes"]["tf_function"]["per_arch"]]
    lite_ms = [r["measured_ms"] for r in result["runtimes"]["tflite"]["per_arch"]]
    ratio = np.asarray(lite_ms) / np.asarray(tf_ms)
    result["tflite_vs_tf_function"] = {
        "spearman": float(stats.spearmanr(tf_ms, lite_ms).statistic),
        "ratio_median": float(np.median(ratio)), "ratio_min": float(ratio.min()),
        "ratio_max": float(ratio.max())}
    print(f"\nTFLite / tf.function latency: median {np.median(ratio):.3f} "
          f"({ratio.min():.3f}-{ratio.max():.3f}); Spearman between the two runtimes "
          f"{result['tflite_vs_tf_function']['spearman']:.3f}")
  result["seconds_per_flops_count"] = per_call_seconds(flops_model, samples)
  result["seconds_per_params_count"] = per_call_seconds(params_model, samples)
  print(f"\nanalytic counts: FLOPs {1e6 * result['seconds_per_flops_count']:.1f} us, params "
        f"{1e6 * result['seconds_per_params_count']:.1f} us per architecture")
  runlog.write_json(args.output, result)
  print(f"written {args.output}")


if __name__ == "__main__":
  main()
