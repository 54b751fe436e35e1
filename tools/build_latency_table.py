"""Times every module of a search space once on this machine: the latency table of
--cost_model=lut.

    python tools/build_latency_table.py --run_dir=runs/demo/search      # that run's model
    python tools/build_latency_table.py --flagfile=flags/demo.cfg --runtime=tflite \\
        --output=tables/demo_tflite.json

The model settings come from RUN_DIR/config.json when it exists, else from the model flags
(a --flagfile or --image_size, --num_layers, ...). For --runtime=tf_function (batch-1
tf.function, as --cost_model=measured) or tflite (batch-1 LiteRT, as --cost_model=tflite)
each module (`space.every_cost_module`) is timed alone, median of --table_repeats calls, and
the table (enas_face/costs/latency_table.py) is written to --output (default
RUN_DIR/latency_table_<runtime>.json). Then its own error report: --check_archs random
architectures measured whole with the same runtime, against the table's prediction
(Spearman rho, share within +-10 %, mean and max relative error), stored in the table
under "error". Search with it: --cost_model=lut --cost_table=PATH.

Measure on an otherwise idle machine: the table is only as good as its timings.
"""
from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from enas_face import cli  # noqa: E402
from enas_face.costs import factory as cost_factory  # noqa: E402
from enas_face import flags as enas_flags  # noqa: E402  (defines the model flags)
from enas_face import runlog  # noqa: E402
from enas_face.config import ConfigError  # noqa: E402
from enas_face.costs import latency_table  # noqa: E402
from enas_face import spaces  # noqa: E402

flags.DEFINE_enum("runtime", "tf_function", latency_table.RUNTIMES, "What times the modules.")
flags.DEFINE_integer("table_warmup", 10, "Untimed calls per module.", lower_bound=0)
flags.DEFINE_integer("table_repeats", 50, "Timed calls per module (median).", lower_bound=1)
flags.DEFINE_integer("table_threads", 1, "LiteRT threads (--runtime=tflite).", lower_bound=1)
flags.DEFINE_string("output", "", "Table path; default RUN_DIR/latency_table_<runtime>.json.")
flags.DEFINE_integer("check_archs", 20, "Random architectures measured whole to report the "
                     "table's error (0: none).", lower_bound=0)
flags.DEFINE_integer("check_seed", 0, "Seed of the checked architectures.")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected positional arguments {argv[1:]}; every option is a --flag")
  config_path = os.path.join(FLAGS.run_dir, runlog.CONFIG)
  try:
    if os.path.exists(config_path):
      model_config = spaces.load_config(config_path).model
      source = config_path
    else:
      model_config = enas_flags.config_from_flags(FLAGS).model
      source = "the model flags"
  except (ConfigError, ValueError) as error:
    cli.fail(str(error))
  output = FLAGS.output or os.path.join(FLAGS.run_dir, f"latency_table_{FLAGS.runtime}.json")
  space = spaces.of(model_config)
  try:
    rows = space.every_cost_module(model_config)
  except NotImplementedError as error:
    cli.fail(str(error))
  print(f"timing {len(rows)} modules of {space.name} ({source}), runtime {FLAGS.runtime}, "
        f"median of {FLAGS.table_repeats}")
  from tqdm import tqdm  # pylint: disable=import-outside-toplevel
  bar = tqdm(total=len(rows) + 1, unit="module")

  def progress(key, stats):
    bar.set_postfix_str(f"{key} {stats.median_ms:.3f} ms")
    bar.update(1)

  table = latency_table.build_table(model_config, FLAGS.runtime, FLAGS.table_warmup,
                                    FLAGS.table_repeats, FLAGS.table_threads, progress)
  bar.close()
  if FLAGS.check_archs:
    rng = np.random.default_rng(FLAGS.check_seed)
    samples = [space.sample_uniform(model_config, rng) for _ in range(FLAGS.check_archs)]
    tic = time.perf_counter()
    meter = cost_factory.make_cost_model(latency_table.WHOLE_MODEL_COST[FLAGS.runtime], model_config,
                                  warmup=FLAGS.table_warmup, repeats=FLAGS.table_repeats,
                                  threads=FLAGS.table_threads)
    measured_ms = [meter(s) for s in samples]
    predicted = [latency_table.predict(table, space.cost_modules(model_config, s))
                 for s in samples]
    table["error"] = {**latency_table.prediction_error(predicted, measured_ms),
                      "check_seed": FLAGS.check_seed,
                      "measure_seconds": time.perf_counter() - tic}
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  runlog.write_json(output, table)
  print(f"table: {output} ({table['build_seconds']:.0f} s to build)")
  if "error" in table:
    print("error against whole-model latency: " + json.dumps(
        {k: round(v, 4) if isinstance(v, float) else v for k, v in table["error"].items()}))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
