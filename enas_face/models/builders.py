"""Keras networks from a search space's samples: the one door from spaces (plain data) to
models. Each space registers its builders here under its name:

    fixed(model_config, sample, name)  the stand-alone network of one sample
    shared(model_config, name)         the weight-sharing supernet of the one-shot search,
                                       called as model(images, arc=int32 choices, ...)
    supernet(model_config, name)       the width/depth supernet of the differentiable search,
                                       called as model(images, mix=[D, K] weights)
    cost_module(model_config, key)     (module, input_shapes): one latency-table module alone

A fixed network takes pixels in [0, 255], [N, S, S, 3] -> embeddings [N, D], with its
weights built. The training library reads two attributes of it: `config` (the ModelConfig)
and `standardize` (an ops.ChannelStandardization applied first, set to the training
split's channel statistics before training).

A space whose samples hold more than an architecture (the comprehensive spaces) is built
through its `architecture_space` and `architecture(sample)`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import keras

from enas_face.models import child as child_lib
from enas_face.models import mobilefacenet
from enas_face import spaces


@dataclasses.dataclass(frozen=True)
class Builders:
  """The builders of one space; None where the space has no such model."""
  fixed: Callable[..., keras.Model]
  shared: Callable[..., keras.Model] | None = None
  supernet: Callable[..., keras.Model] | None = None
  cost_module: Callable[..., tuple[keras.Model, list]] | None = None


_BUILDERS: dict[str, Builders] = {}


def register(space_name: str, fixed: Callable, *, shared: Callable | None = None,
             supernet: Callable | None = None, cost_module: Callable | None = None) -> Builders:
  """Registers the builders of the space `space_name` (replacing earlier ones); returns them."""
  _BUILDERS[space_name] = Builders(fixed, shared, supernet, cost_module)
  return _BUILDERS[space_name]


def unregister(space_name: str) -> None:
  _BUILDERS.pop(space_name, None)


def _architecture_space(model_config) -> spaces.SearchSpace:
  return spaces.get(model_config.search_space).architecture_space


def _builders(model_config, what: str) -> Builders:
  space = _architecture_space(model_config)
  found = _BUILDERS.get(space.name)
  if found is None:
    raise ValueError(f"no model builders are registered for the {space.name!r} space "
                     "(models.builders.register)")
  if getattr(found, what) is None:
    raise NotImplementedError(f"the {space.name} space has no {what} model")
  return found


def build_fixed(model_config, sample: Any, name: str = "child") -> keras.Model:
  """The stand-alone network of `sample` (a sample of model_config.search_space)."""
  space = spaces.get(model_config.search_space)
  return _builders(model_config, "fixed").fixed(model_config, space.architecture(sample),
                                                name=name)


def build_child(config) -> keras.Model:
  """The stand-alone network of a RunConfig's architecture (config.arc)."""
  return build_fixed(config.model, config.arc, name="child")


def build_shared(model_config, name: str = "child") -> keras.Model:
  """The weight-sharing supernet (one trace for every sample: the choices are a tensor)."""
  return _builders(model_config, "shared").shared(model_config, name=name)


def build_supernet(model_config, name: str = "supernet") -> keras.Model:
  """The width/depth supernet: every block at full width, mixed by `mix`."""
  return _builders(model_config, "supernet").supernet(model_config, name=name)


def build_cost_module(model_config, key: str):
  """(module, input_shapes): module `key` of the space's every_cost_module, built alone with
  random weights (batch 1), for timing it in a latency table."""
  return _builders(model_config, "cost_module").cost_module(model_config, key)


register("enas_macro",
         fixed=lambda model_config, arc, name="child":
         child_lib.FixedChild(model_config, arc, name=name).build_for_input(),
         shared=lambda model_config, name="child":
         child_lib.SharedChild(model_config, name=name).build_for_input(),
         cost_module=child_lib.build_cost_module)
# One supernet serves both searches: called with mix= (differentiable) or arc= (one-shot).
register("mobilefacenet", fixed=mobilefacenet.build_fixed, shared=mobilefacenet.build_supernet,
         supernet=mobilefacenet.build_supernet)
