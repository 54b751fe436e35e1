"""Shared test setup: quiet TensorFlow, make the repo importable, real-data fixtures, and
`python -m enas_face.main` run inside the test process."""
import contextlib
import io
import logging
import os
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
  (--deterministic turns it on for the process) is put back as it was."""
  from absl import flags
  from absl import logging as absl_logging

  from enas_face import cli
  from enas_face import main as enas_main

  values = flags.FLAGS
  stdout, stderr = io.StringIO(), io.StringIO()
  handler = logging.StreamHandler(stderr)
  handler.setFormatter(absl_logging.PythonFormatter())
  logger = absl_logging.get_absl_logger()
  level = logger.level
  deterministic = _op_determinism()
  cwd = os.getcwd()
  code = 0
  os.chdir(ROOT)
  logger.addHandler(handler)
  try:
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
      values.unparse_flags()
      try:
        argv = cli.parse_flags(["enas_face.main", *args])
        if values["verbosity"].using_default_value:  # as app.run: INFO and up
          values.verbosity = 0
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

