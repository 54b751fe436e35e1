"""Search spaces, plain data: each owns its decisions, its encoding and its analytic costs.

    space = spaces.get("enas_macro")          # or spaces.of(model_config)
    sample = space.sample_uniform(model_config, rng)
    # networks are built in the models room: models.builders.build_fixed(model_config, sample)

`register` adds a space (a `base.SearchSpace` instance) under its name; `load_samples`
reads the samples of a file written by a search (arcs_ranked.json) or by hand;
`save_config` / `load_config` write and read a run's config.json, its samples through
their space's codec.
"""
from __future__ import annotations

import json
import os
from typing import Any

from enas_face.config import ConfigError, ModelConfig, RunConfig
from enas_face import runlog
from enas_face.spaces.base import Decision, SampleError, SearchSpace
from enas_face.spaces import comprehensive
from enas_face.spaces.enas_macro import EnasMacroSpace
from enas_face.spaces.mobilefacenet import MobileFaceNetSpace

_REGISTRY: dict[str, SearchSpace] = {}


def register(space: SearchSpace) -> SearchSpace:
  """Adds `space` under space.name (replacing one of the same name); returns it."""
  if not isinstance(space, SearchSpace) or not space.name:
    raise TypeError(f"expected a named SearchSpace instance, got {space!r}")
  _REGISTRY[space.name] = space
  return space


def names() -> tuple[str, ...]:
  return tuple(sorted(_REGISTRY))


def get(name: str) -> SearchSpace:
  """The registered space `name`; ValueError listing the registered ones otherwise."""
  try:
    return _REGISTRY[name]
  except KeyError:
    raise ValueError(f"unknown search space {name!r}; registered: {', '.join(names())}") from None


def of(model_config: ModelConfig) -> SearchSpace:
  """The space a model config searches: get(model_config.search_space)."""
  return get(model_config.search_space)


def _sample_from_json(obj: Any, model_config: ModelConfig) -> Any:
  return of(model_config).from_json(obj, model_config)


def config_to_json(config: RunConfig) -> dict:
  """The RunConfig as JSON, its samples in their space's JSON form."""
  return config.to_json(of(config.model).to_json)


def config_from_json(obj: dict) -> RunConfig:
  """Inverse of config_to_json; ConfigError naming what is wrong."""
  return RunConfig.from_json(obj, _sample_from_json)


def save_config(config: RunConfig, path: str) -> None:
  """Writes config.json (atomically, through runlog)."""
  runlog.write_json(path, config_to_json(config))


def load_config(path: str) -> RunConfig:
  """A run folder's config.json; ConfigError naming the file when it is missing or not a
  RunConfig."""
  if not os.path.exists(path):
    raise ConfigError(f"{path}: no such file (is --run_dir a finished or started run?)")
  try:
    with open(path, encoding="utf-8") as handle:
      return config_from_json(json.load(handle))
  except json.JSONDecodeError as error:
    raise ConfigError(f"{path}: not valid JSON ({error})") from error


def sample_record(space: SearchSpace, sample) -> dict:
  """How a sample is written in logs and rankings: {"space", "sample", "encoding"}."""
  return {"space": space.name, "sample": space.to_json(sample), "encoding": space.to_string(sample)}


def load_samples(path: str | os.PathLike, space: SearchSpace, model_config) -> list[Any]:
  """Samples of `space` from a file, best first: one sample (the space's JSON), a JSON list
  of them, or a search's ranking {"architectures": [{"space", "sample"} or {"arc"}, ...]}.

  FileNotFoundError for a missing file; SampleError naming the file (and the entry) when it
  is not JSON, lists no sample, or holds samples of another space.
  """
  path = os.fspath(path)
  try:
    with open(path, encoding="utf-8") as handle:
      obj = json.load(handle)
  except FileNotFoundError:
    raise FileNotFoundError(f"sample file {path!r} does not exist") from None
  except json.JSONDecodeError as error:
    raise SampleError(f"sample file {path!r} is not valid JSON: {error}") from None
  if isinstance(obj, dict) and obj.get("space") not in (None, space.name) and "sample" not in obj:
    raise SampleError(f"sample file {path!r} ranks samples of the {obj['space']!r} space, "
                      f"not of --search_space={space.name}")
  entries = obj["architectures"] if isinstance(obj, dict) and "architectures" in obj else obj
  if not isinstance(entries, list):
    entries = [entries]
  samples = []
  for index, entry in enumerate(entries):
    if isinstance(entry, dict) and "sample" in entry:
      if entry.get("space", space.name) != space.name:
        raise SampleError(f"sample file {path!r} entry {index} is a sample of the "
                          f"{entry['space']!r} space, not of --search_space={space.name}")
      entry = entry["sample"]
    elif isinstance(entry, dict) and "arc" in entry:
      entry = entry["arc"]  # rankings written before spaces had names: ENAS macro arcs
    try:
      samples.append(space.from_json(entry, model_config))
    except SampleError as error:
      raise SampleError(f"sample file {path!r} entry {index} is not a valid {space.name} "
                        f"sample: {error}") from None
  if not samples:
    raise SampleError(f"sample file {path!r} lists no sample")
  return samples


register(EnasMacroSpace())
register(MobileFaceNetSpace())
for _space in comprehensive.SPACES:
  register(_space)

__all__ = ["Decision", "SampleError", "SearchSpace", "EnasMacroSpace", "MobileFaceNetSpace",
           "register", "names", "get", "of", "sample_record", "load_samples", "config_to_json",
           "config_from_json", "save_config", "load_config"]
