"""--init_checkpoint: fixed training and multi-trial trials start from given child weights."""
import numpy as np
import pytest
import tensorflow as tf

from enas_face.config import ConfigError, ModelConfig
from enas_face.spaces import enas_macro
from enas_face.models import builders
from enas_face import spaces
from enas_face.training import checkpoints

CONFIG = ModelConfig(image_size=16, base_filters=4, embedding_dim=8, num_layers=3,
                     num_reductions=1)
ARC = enas_macro.default_architecture(3)  # ops sep3x3, sep5x5, sep3x3
OTHER = enas_macro.Architecture((2, 1, 3), ((), (0,), (1, 0)))  # avgpool, sep5x5, maxpool


def child(arc, config=CONFIG):
  return builders.build_fixed(config, arc, name="child")


def weights(model, key):
  return [w.numpy() for w in model.module(key).weights]


def saved_run(tmp_path, model):
  """A run folder whose checkpoints/ holds `model` as the fixed runs save it."""
  run_dir = str(tmp_path / "source")
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(child=model),
                                       checkpoints.checkpoint_dir(run_dir), max_to_keep=1)
  return run_dir, manager.save()


def test_same_architecture_starts_from_every_saved_weight(tmp_path):
  source = child(ARC)
  run_dir, _ = saved_run(tmp_path, source)
  target = child(ARC)
  assert not np.allclose(weights(target, "stem")[0], weights(source, "stem")[0])
  checkpoints.initialize_child(target, run_dir)
  for key in source.module_keys:
    for a, b in zip(weights(source, key), weights(target, key)):
      np.testing.assert_array_equal(a, b)


def test_another_architecture_takes_the_modules_it_shares(tmp_path):
  source = child(ARC)
  _, path = saved_run(tmp_path, source)  # a checkpoint prefix works too
  target = child(OTHER)
  before = weights(target, "layer0_avgpool3x3")
  checkpoints.initialize_child(target, path)
  for key in ("stem", "layer1_sep5x5", "embedding", "reduce0_to1"):
    for a, b in zip(weights(source, key), weights(target, key)):
      np.testing.assert_array_equal(a, b)
  for a, b in zip(before, weights(target, "layer0_avgpool3x3")):  # not in the source
    np.testing.assert_array_equal(a, b)


def test_errors_name_the_flag(tmp_path):
  with pytest.raises(ConfigError, match="--init_checkpoint=.*no checkpoint"):
    checkpoints.initialize_child(child(ARC), str(tmp_path))
  wide = ModelConfig(image_size=16, base_filters=8, embedding_dim=8, num_layers=3,
                     num_reductions=1)
  run_dir, _ = saved_run(tmp_path, child(ARC, wide))
  with pytest.raises(ConfigError, match="--init_checkpoint=.*do not fit"):
    checkpoints.initialize_child(child(ARC), run_dir)


def test_flag_reaches_fixed_training_and_every_multi_trial_trial(tmp_path):
  from absl import flags

  from enas_face import flags as enas_flags
  from enas_face.search import strategies
  run_dir, _ = saved_run(tmp_path, child(ARC))
  values = flags.FLAGS
  values.unparse_flags()
  values(["prog", "--mode=search", "--search_strategy=multi_trial", f"--init_checkpoint={run_dir}",
          "--num_layers=3", "--num_reductions=1", "--reward=accuracy"])
  config = enas_flags.config_from_flags(values)
  assert config.train.init_checkpoint == run_dir
  trials = strategies.MultiTrial.__new__(strategies.MultiTrial)  # only its config is needed
  trials.config, trials.space = config, spaces.of(config.model)
  assert trials.trial_config(ARC).train.init_checkpoint == run_dir
  values.unparse_flags()
  with pytest.raises(ConfigError, match="--init_checkpoint=.*no such"):
    values(["prog", f"--init_checkpoint={tmp_path / 'nothing'}"])
    enas_flags.config_from_flags(values)
  values.unparse_flags()
