"""Calibrated thresholds (evaluation/thresholds.py) against brute force, and their file."""
import json

import numpy as np
import pytest

from enas_face.evaluation import thresholds, verification


def _pairs(seed=0, num_same=300, num_different=500):
  rng = np.random.default_rng(seed)
  scores = np.concatenate([rng.normal(0.6, 0.15, num_same), rng.normal(0.1, 0.15, num_different)])
  return scores, np.arange(scores.size) < num_same


@pytest.mark.parametrize("far", [0.0, 0.002, 0.01, 0.1, 0.5])
def test_threshold_at_far_is_the_most_permissive_admissible_one(far):
  scores, is_same = _pairs()
  found = thresholds.threshold_at_far(scores, is_same, far)
  different, same = scores[~is_same], scores[is_same]
  # brute force over every candidate: smallest t with mean(different > t) <= far
  candidates = verification._candidate_thresholds(scores)
  admissible = [t for t in candidates if np.mean(different > t) <= far + 1e-12]
  assert found["threshold"] == pytest.approx(min(admissible))
  assert found["far"] == pytest.approx(np.mean(different > found["threshold"]))
  assert found["far"] <= far + 1e-12
  assert found["tar"] == pytest.approx(np.mean(same > found["threshold"]))
  assert found["resolvable"] == (far * different.size >= 1)


def test_unresolvable_far_gives_the_strictest_threshold_and_says_so():
  scores, is_same = _pairs(num_different=500)
  found = thresholds.threshold_at_far(scores, is_same, 1e-4)
  assert not found["resolvable"] and found["far"] == 0.0
  assert found["threshold"] > scores[~is_same].max()


def test_calibration_round_trips_through_json_and_is_chosen_by_name_or_number():
  scores, is_same = _pairs(seed=3)
  calibration = thresholds.calibrate(scores, is_same, source={"pairs": "test"})
  assert calibration["best_accuracy"]["threshold"] == verification.best_threshold(scores, is_same)
  assert calibration["pairs"] == {"num_pairs": 800, "num_same": 300, "num_different": 500,
                                  "pairs": "test"}
  loaded = thresholds.validate(json.loads(json.dumps(calibration)), "t.json")
  assert thresholds.names(loaded) == ["best_accuracy", "far_1e-3", "far_1e-4"]
  assert thresholds.choose(loaded) == calibration["best_accuracy"]["threshold"]
  assert thresholds.choose(loaded, "far_1e-3") == calibration["far_1e-3"]["threshold"]
  assert thresholds.choose(loaded, "0.25") == 0.25
  with pytest.raises(thresholds.ThresholdError, match="--threshold=far_1e-5.*best_accuracy"):
    thresholds.choose(loaded, "far_1e-5")
  with pytest.raises(thresholds.ThresholdError, match=r"\[-1, 1\]"):
    thresholds.choose(loaded, "1.5")
  with pytest.raises(thresholds.ThresholdError, match="no thresholds.json"):
    thresholds.choose(None, "best_accuracy")
  assert thresholds.choose(None, "0.3") == 0.3


@pytest.mark.parametrize("broken, message", [
    ({"format": "other"}, "not an enas_face thresholds file"),
    ({"format": thresholds.FORMAT, "version": 99}, "thresholds version 99"),
    ({"format": thresholds.FORMAT, "version": 1, "best_accuracy": {"threshold": "x"}},
     "best_accuracy has no finite threshold"),
    ({"format": thresholds.FORMAT, "version": 1}, "no best_accuracy"),
])
def test_a_broken_thresholds_file_is_refused_naming_it(broken, message):
  with pytest.raises(thresholds.ThresholdError, match=f"m/thresholds.json: {message}"):
    thresholds.validate(broken, "m/thresholds.json")
