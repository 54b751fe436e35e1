"""Shared test setup: quiet TensorFlow, make the repo importable, real-data fixtures, and
`python -m enas_face.main` run inside the test process."""
import contextlib
import gc
import io
import logging
import os
import shutil
import subprocess
import sys
import traceback

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

# Real face data (LFW, ORL, photos) lives beside the clone, never inside it.
SHARED_DATA = os.environ.get("ENAS_FACE_SHARED_DATA",
                             os.path.join(os.path.dirname(ROOT), "shared", "data"))


def in_ci() -> bool:
  return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def shared_data() -> str:
  """Path of ../shared/data. Outside CI a missing folder skips (saying why); in CI it fails."""
  if os.path.isdir(SHARED_DATA):
    return SHARED_DATA
  message = (f"real face data not found at {SHARED_DATA} (set ENAS_FACE_SHARED_DATA); "
             "CI provides it beside the clone")
  if in_ci():
    pytest.fail(message)
  pytest.skip(message)


_frozen = 0  # depth of nested frozen_heap() blocks


@contextlib.contextmanager
def frozen_heap():
  """Freezes the objects alive on entry (gc.freeze) until the outermost block ends
  (gc.unfreeze: they go back to the collector; nothing is kept). Code inside that calls
  gc.collect() (enas_face does after each latency measurement and latency-table module)
  walks its own objects only, not the whole test session's heap (2-3 M objects late in
  the suite: ~0.5 s a call)."""
  global _frozen  # pylint: disable=global-statement
  if not _frozen:
    gc.freeze()
  _frozen += 1
  try:
    yield
  finally:
    _frozen -= 1
    if not _frozen:
      gc.unfreeze()


@pytest.fixture
def frozen_gc():
  """frozen_heap() for the whole test, for tests that measure many latencies in process."""
  with frozen_heap():
    yield


def _op_determinism() -> bool:
  if "tensorflow" not in sys.modules:
    return False
  from tensorflow.python.framework import config as tf_config
  return tf_config.is_op_determinism_enabled()


def run_main_in_process(*args) -> subprocess.CompletedProcess:
  """`python -m enas_face.main ARGS` (cwd: the repo root) inside this process, without the
  ~5 s of a fresh interpreter importing TensorFlow: the same flag parsing (`cli.parse_flags`)
  and `main.main`. Returns what `subprocess.run(..., capture_output=True, text=True)` would:
  the exit code (`error:` lines and their code 2 or 3 come from `SystemExit`; an uncaught
  exception is code 1 with its traceback), stdout, and stderr holding the absl log lines
  (INFO and up, as `app.run` shows them).

  For tests that check what a run writes and logs. Keep a real subprocess where the process
  is what is tested: a kill and resume, logical devices or TF_CONFIG (tf.distribute), Ray,
  what a fresh process imports. The absl flags are reset before and after; op determinism
  (--deterministic turns it on for the process) is put back as it was.

  The run is a frozen_heap() block: its own gc.collect() calls (one per latency
  measurement) walk the run's objects, not the whole test session's heap as well."""
  from absl import flags
  from absl import logging as absl_logging

  from enas_face import cli
  from enas_face import main as enas_main

  values = flags.FLAGS
  stdout, stderr = io.StringIO(), io.StringIO()
  handler = logging.StreamHandler(stderr)
  handler.setFormatter(absl_logging.PythonFormatter())
  logger = absl_logging.get_absl_logger()
  level, disabled, disabled_below = logger.level, logger.disabled, logging.root.manager.disable
  deterministic = _op_determinism()
  cwd = os.getcwd()
  code = 0
  os.chdir(ROOT)
  logger.addHandler(handler)
  try:
    with frozen_heap(), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
      values.unparse_flags()
      try:
        argv = cli.parse_flags(["enas_face.main", *args])
        if values["verbosity"].using_default_value:  # as app.run: INFO and up
          values.verbosity = 0
        # Whatever earlier tests left behind (absl's handler on the root logger moves the level
        # there; a disabled logger or logging.disable), the run's log reaches `stderr`.
        logger.disabled = False
        logging.disable(logging.NOTSET)
        logger.setLevel(absl_logging.converter.absl_to_standard(values.verbosity))
        enas_main.main(argv)
      except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
      except Exception:  # pylint: disable=broad-except
        traceback.print_exc()
        code = 1
  finally:
    values.unparse_flags()
    logger.removeHandler(handler)
    logger.setLevel(level)
    logger.disabled = disabled
    logging.disable(disabled_below)
    os.chdir(cwd)
    if _op_determinism() != deterministic:
      from tensorflow.python.framework import config as tf_config  # no public switch-off
      if deterministic:
        tf_config.enable_op_determinism()
      else:
        tf_config.disable_op_determinism()
  return subprocess.CompletedProcess(["enas_face.main", *args], code, stdout.getvalue(),
                                     stderr.getvalue())


@pytest.fixture(scope="session")
def main_in_process():
  """run_main_in_process, for test files and their fixtures."""
  return run_main_in_process



# ------------------------------------------------------------------- shared tiny runs
class SharedRun:
  """A run folder made once per session: its folder, command-line flags and CompletedProcess.
  Tests read it and may run --mode=eval/export on it into folders of their own; a test that
  trains, resumes or refuses in a run works on a copy."""

  def __init__(self, run_dir: str, args: list[str], result: subprocess.CompletedProcess):
    self.run_dir, self.args, self.result = run_dir, args, result

  def copy(self, destination: str) -> str:
    """Copies the run folder to `destination`. The copy's config.json still names the
    original's data cache (--cache_dir defaults to RUN_DIR/data_cache): a rerun in the copy
    passes same_data() to continue the same run."""
    shutil.copytree(self.run_dir, destination)
    return destination

  def same_data(self) -> str:
    return f"--cache_dir={os.path.join(self.run_dir, 'data_cache')}"


# The tiny fixed run of tests/test_main.py (its TINY and --epochs=2) and tests/test_export.py
# (its TINY_RUN and --export_format=saved_model,tflite): one run serves both.
TINY_FIXED_RUN = ["--image_size=16", "--synthetic_identities=8",
                  "--synthetic_images_per_identity=6", "--synthetic_heldout_identities=4",
                  "--synthetic_heldout_images_per_identity=5", "--num_pairs=20",
                  "--base_filters=4", "--embedding_dim=8", "--batch_size=8", "--warmup_epochs=1",
                  "--pca_components=8", "--eval_batch_size=64", "--epochs=2"]


@pytest.fixture(scope="session")
def tiny_fixed_run(tmp_path_factory) -> SharedRun:
  """A finished tiny 2-epoch fixed run (in process) that exported its SavedModel and TFLite
  file, with the CompletedProcess of its training."""
  run_dir = str(tmp_path_factory.mktemp("shared_fixed") / "tiny")
  args = ["--mode=fixed", f"--run_dir={run_dir}", "--export_format=saved_model,tflite",
          *TINY_FIXED_RUN]
  result = run_main_in_process(*args)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  return SharedRun(run_dir, args, result)


# The tiny TuNAS-recipe one-shot search on the MobileFaceNet supernet (3 epochs, the first its
# warm-up) of tests/test_supernet_search.py, whose shared weights
# tests/test_bench_nas_supernet.py scores too.
TINY_SUPERNET_SEARCH = [
    "--image_size=16", "--synthetic_identities=8", "--synthetic_images_per_identity=6",
    "--synthetic_heldout_identities=4", "--synthetic_heldout_images_per_identity=5",
    "--num_pairs=20", "--batch_size=8", "--warmup_epochs=1", "--pca_components=8",
    "--eval_batch_size=64", "--mode=search", "--search_space=mobilefacenet",
    "--width_multiplier=0.25", "--embedding_dim=8", "--search_epochs=3", "--controller_steps=2",
    "--controller_samples=2", "--search_val_batch_size=8", "--num_final_samples=4",
    "--num_ranked=3", "--cost_model=flops", "--cost_target=2e5", "--controller=categorical",
    "--controller_warmup_fraction=0.34", "--path_dropout_warmup=1", "--reward=two_sided",
    "--cost_penalty=0.1", "--controller_optimizer=adam", "--controller_lr=0.05",
    "--entropy_weight=0", "--baseline_decay=0.95"]


@pytest.fixture(scope="session")
def tiny_tunas_search(tmp_path_factory) -> SharedRun:
  """A finished tiny TuNAS-recipe search (in process) and the CompletedProcess of it."""
  run_dir = str(tmp_path_factory.mktemp("shared_tunas") / "search")
  args = [*TINY_SUPERNET_SEARCH, f"--run_dir={run_dir}"]
  result = run_main_in_process(*args)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  return SharedRun(run_dir, args, result)
