"""The validity benchmark's noise ceiling on Kendall tau (bench/bench_search_validity.py)."""
import os
import sys

import numpy as np
import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


@pytest.fixture(scope="module")
def validity():
  sys.path.insert(0, BENCH)
  try:
    import bench_search_validity  # pylint: disable=import-outside-toplevel
    yield bench_search_validity
  finally:
    sys.path.remove(BENCH)


ACCURACIES = [0.905, 0.9135, 0.9175, 0.9182, 0.9188, 0.919, 0.9208, 0.9215, 0.9218, 0.9228]


def test_ceiling_is_one_without_training_noise(validity):
  result = validity.tau_noise_ceiling(ACCURACIES, seed_std=1e-7, draws=200)
  assert result["shrink"] == pytest.approx(1.0)
  assert result["perfect_proxy"] == pytest.approx(1.0)
  assert result["retest"] == pytest.approx(1.0)


def test_ceiling_is_zero_when_the_spread_is_all_noise(validity):
  result = validity.tau_noise_ceiling(ACCURACIES, seed_std=float(np.std(ACCURACIES, ddof=1)))
  assert result["perfect_proxy"] == 0.0 and result["retest"] == 0.0


def test_ceiling_falls_with_noise_and_a_perfect_proxy_beats_a_retest(validity):
  low = validity.tau_noise_ceiling(ACCURACIES, seed_std=0.001, draws=2000)
  high = validity.tau_noise_ceiling(ACCURACIES, seed_std=0.003, draws=2000)
  assert 1.0 > low["perfect_proxy"] > high["perfect_proxy"] > 0.0
  assert low["perfect_proxy"] > low["retest"] and high["perfect_proxy"] > high["retest"]
  # The shrunk spread plus the noise gives back the measured variance.
  assert high["true_spread"] ** 2 + 0.003 ** 2 == pytest.approx(np.var(ACCURACIES, ddof=1))
  # Deterministic for a given seed.
  assert validity.tau_noise_ceiling(ACCURACIES, 0.003, draws=2000) == high
