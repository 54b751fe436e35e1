"""Shared test setup: quiet TensorFlow, make the repo importable, real-data fixtures."""
import os
import sys

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
