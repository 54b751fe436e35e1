"""The teacher benchmark's equal-FLOPs baselines (bench/bench_teacher.py): the scaled teacher
and the scaled MobileFaceNet land on the budget."""
import dataclasses
import os
import sys

import pytest

from enas_face import spaces
from enas_face.config import ModelConfig, RunConfig

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


@pytest.fixture(scope="module")
def bench():
  sys.path.insert(0, BENCH)
  try:
    import bench_teacher  # pylint: disable=import-outside-toplevel
    yield bench_teacher
  finally:
    sys.path.remove(BENCH)


def teacher_config(base_filters=48):
  model = ModelConfig(image_size=32, base_filters=base_filters, embedding_dim=128)
  return RunConfig(mode="fixed", run_dir="/tmp/unused", arc=spaces.of(model).default(model),
                   model=model, data=None, train=None, eval=None)


def test_scaled_teacher_is_the_closest_even_width(bench):
  teacher = teacher_config()
  space = spaces.of(teacher.model)
  target = space.flops(teacher.model, teacher.arc) / 4
  chosen = bench.closest_base_filters(teacher, target)
  assert chosen % 2 == 0 and chosen < 48

  def error(bf):
    return abs(space.flops(dataclasses.replace(teacher.model, base_filters=bf), teacher.arc)
               - target)

  assert error(chosen) <= min(error(chosen - 2), error(chosen + 2))


def test_scaled_mobilefacenet_lands_on_the_budget(bench):
  model = teacher_config().model
  space = spaces.get("mobilefacenet")
  for target in (5e6, 20e6):
    width = bench.closest_width(model, target)
    scaled = dataclasses.replace(model, search_space="mobilefacenet", width_multiplier=width)
    assert space.flops(scaled, space.default(scaled)) == pytest.approx(target, rel=0.03)
