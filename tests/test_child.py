import numpy as np
import pytest
import tensorflow as tf

from enas_face.models import child as child_lib
from enas_face.spaces import enas_macro
from enas_face.config import ConfigError, ModelConfig


def bn(c):  # gamma, beta, moving mean, moving variance
  return 4 * c


def test_layer_stages_follow_reduction_positions():
  assert child_lib.layer_stages(5, 3) == (0, 1, 2, 3, 3)
  assert child_lib.layer_stages(2, 1) == (0, 1)


def test_parameter_count_by_hand():
  # L=2, one reduction after layer 0, base 4 channels, GAP head of 16.
  # Layer 0: sep3x3 at 4 channels; layer 1: maxpool3x3 at 8 channels with a skip from layer 0.
  config = ModelConfig(image_size=8, num_layers=2, num_reductions=1, base_filters=4,
                       embedding_dim=16, embedding_head="gap")
  arc = enas_macro.Architecture(ops=(0, 3), skips=((), (1,)))
  model = child_lib.FixedChild(config, arc).build_for_input()
  expected = (
      3 + 3                                    # standardisation mean/std (non-trainable)
      + 3 * 3 * 3 * 4 + bn(4)                  # stem 3x3 conv + BN
      + 4 * 4 + 3 * 3 * 4 + 4 * 4 + bn(4)      # layer 0: 1x1, depthwise 3x3, pointwise, BN
      + bn(4)                                  # layer 0 post-sum BN
      + 4 * 4 + 4 * 4 + bn(8)                  # reduce0_to1: two 1x1 convs 4->4, BN(8)
      + 8 * 8                                  # layer 1 maxpool branch 1x1 conv
      + 8 * 8 + bn(8)                          # skip 0->1 nonlinear module (ReLU, 1x1, BN)
      + bn(8)                                  # layer 1 post-sum BN
      + bn(8) + 8 * 16 + 3 * 16                # head: BN in, fc, BN out (no scale)
  )
  assert model.count_params() == expected
  assert list(model.reduction_keys) == ["reduce0_to1"]
  assert model(tf.zeros([3, 8, 8, 3])).shape == (3, 16)


def test_skips_across_reductions_get_their_own_reductions():
  config = ModelConfig(image_size=16, num_layers=5, num_reductions=3, base_filters=4,
                       embedding_dim=8)
  arc = enas_macro.Architecture.from_string("0  1 1  2 0 0  3 0 0 0  0 1 0 0 1")
  model = child_lib.FixedChild(config, arc).build_for_input()
  # Main path: reduce0_to1, reduce1_to2, reduce2_to3; skip 0->1 uses reduce0_to1;
  # skip 0->4 (stage 3) needs reduce0_to2 and reduce0_to3; skip 3->4 is at the same stage.
  assert list(model.reduction_keys) == ["reduce0_to1", "reduce0_to2", "reduce0_to3", "reduce1_to2",
                                      "reduce2_to3"]
  out = model(tf.random.uniform([2, 16, 16, 3], 0, 255), training=True)
  assert out.shape == (2, 8)
  assert np.all(np.isfinite(out))


def test_inference_is_deterministic():
  config = ModelConfig(image_size=16, base_filters=4, embedding_dim=8, dropblock_keep_prob=0.5)
  model = child_lib.FixedChild(config, enas_macro.default_architecture(5)).build_for_input()
  x = tf.random.uniform([4, 16, 16, 3], 0, 255)
  np.testing.assert_array_equal(model(x, training=False), model(x, training=False))


def test_rejects_mismatched_arc_and_unreducible_input():
  with pytest.raises(ValueError, match="num_layers=5"):
    child_lib.FixedChild(ModelConfig(image_size=16), enas_macro.default_architecture(3))
  with pytest.raises(ConfigError, match="--image_size=20"):
    child_lib.FixedChild(ModelConfig(image_size=20), enas_macro.default_architecture(5))


def test_get_config_round_trip():
  config = ModelConfig(image_size=16, base_filters=4, embedding_dim=8)
  model = child_lib.FixedChild(config, enas_macro.default_architecture(5))
  clone = child_lib.FixedChild.from_config(model.get_config())
  assert clone.config == config and clone.arc == model.arc


def test_checkpoint_restores_every_weight(tmp_path):
  config = ModelConfig(image_size=16, base_filters=4, embedding_dim=8)
  arc = enas_macro.Architecture.from_string("0  1 1  2 0 1  3 1 0 1  0 1 1 1 1")
  trained = child_lib.FixedChild(config, arc).build_for_input()
  trained(tf.random.uniform([8, 16, 16, 3], 0, 255), training=True)  # move BN statistics
  path = tf.train.Checkpoint(child=trained).save(str(tmp_path / "ckpt"))
  fresh = child_lib.FixedChild(config, arc).build_for_input()
  tf.train.Checkpoint(child=fresh).restore(path).assert_consumed()
  for a, b in zip(trained.weights, fresh.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def shared_and_fixed(arc, config):
  shared = child_lib.SharedChild(config).build_for_input()
  fixed = child_lib.FixedChild(config, arc).build_for_input().load_shared_weights(shared)
  return shared, fixed


@pytest.mark.parametrize("encoding", ["0  1 1  2 0 1  3 1 0 1  0 1 1 1 1",
                                      "3  2 0  1 0 0  0 0 0 0  2 0 0 0 0",
                                      "1  1 1  0 1 1  2 1 1 1  3 1 1 1 1"])
def test_shared_child_with_copied_weights_equals_fixed_child(encoding):
  config = ModelConfig(image_size=16, base_filters=4, embedding_dim=8, dropblock_keep_prob=1.0)
  arc = enas_macro.Architecture.from_string(encoding)
  shared, fixed = shared_and_fixed(arc, config)
  # Make the shared weights of this architecture differ from a fresh init, BN stats included.
  images = tf.random.uniform([6, 16, 16, 3], 0, 255, seed=1)
  arc_tensor = tf.constant(arc.to_ints(), tf.int32)
  for _ in range(2):
    shared(images, arc=arc_tensor, training=True)
  fixed.load_shared_weights(shared)
  for training in (False, True):
    np.testing.assert_allclose(shared(images, arc=arc_tensor, training=training),
                               fixed(images, training=training), rtol=1e-4, atol=1e-4)


def test_shared_child_holds_every_candidate_and_traces_once():
  config = ModelConfig(image_size=16, base_filters=4, embedding_dim=8)
  shared = child_lib.SharedChild(config).build_for_input()
  for i in range(5):
    for op in enas_macro.OPS:
      assert child_lib.op_key(i, op) in shared.module_keys
  assert sum(k.startswith("reduce") for k in shared.module_keys) == 6  # 3 + 2 + 1
  traces = []

  @tf.function
  def embed(images, arc):
    traces.append(1)
    return shared(images, arc=arc, training=False)

  images = tf.random.uniform([2, 16, 16, 3], 0, 255)
  rng = np.random.default_rng(0)
  outputs = [embed(images, tf.constant(enas_macro.sample_uniform(5, rng).to_ints(), tf.int32))
             for _ in range(4)]
  assert len(traces) == 1
  assert not np.allclose(outputs[0], outputs[1])


def test_untaken_branches_get_zero_gradients():
  config = ModelConfig(image_size=16, base_filters=4, embedding_dim=8, dropblock_keep_prob=1.0)
  shared = child_lib.SharedChild(config).build_for_input()
  arc = enas_macro.Architecture.from_string("0  0 0  0 0 0  0 0 0 0  0 0 0 0 0")  # no skips
  images = tf.random.uniform([4, 16, 16, 3], 0, 255)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(shared(images, arc=tf.constant(arc.to_ints()), training=True) ** 2)
  variables = shared.trainable_variables
  grads = dict(zip([v.path for v in variables], tape.gradient(loss, variables)))
  def norm(fragment):
    return sum(float(tf.norm(g)) for p, g in grads.items() if fragment in p and g is not None)
  assert norm("layer2_sep3x3/") > 0
  assert norm("layer2_sep5x5/") == 0 and norm("layer2_maxpool3x3/") == 0
  assert norm("layer3_skip1/") == 0


def test_batch_statistics_mode_uses_the_batch_and_no_dropblock():
  config = ModelConfig(image_size=16, base_filters=4, embedding_dim=8, dropblock_keep_prob=0.5)
  shared = child_lib.SharedChild(config).build_for_input()
  arc = tf.constant(enas_macro.default_architecture(5).to_ints(), tf.int32)
  images = tf.random.uniform([8, 16, 16, 3], 0, 255, seed=3)
  first = shared(images, arc=arc, batch_statistics=True)
  again = shared(images, arc=arc, batch_statistics=True)
  np.testing.assert_allclose(first, again, atol=1e-5)  # no DropBlock noise
  # Different from inference-mode BN (moving averages at their initial values).
  assert not np.allclose(first, shared(images, arc=arc, training=False), atol=1e-3)


def test_mask_skips_equal_cond_skips_in_outputs_and_gradients():
  """skip_mode="mask" (every skip computed, times its bit) is the same function as "cond"."""
  config = ModelConfig(image_size=16, base_filters=4, embedding_dim=8, dropblock_keep_prob=1.0)
  cond = child_lib.SharedChild(config, skip_mode="cond").build_for_input()
  mask = child_lib.SharedChild(config, skip_mode="mask").build_for_input()
  mask.set_weights(cond.get_weights())
  images = tf.random.uniform([4, 16, 16, 3], 0, 255, seed=2)
  arc = tf.constant(enas_macro.Architecture.from_string("1  0 1  2 1 0  0 0 1 1  3 1 0 0 1").to_ints())
  for training in (False, True):
    np.testing.assert_allclose(cond(images, arc=arc, training=training),
                               mask(images, arc=arc, training=training), rtol=1e-5, atol=1e-5)
  grads = []
  for model in (cond, mask):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(model(images, arc=arc, training=True, batch_statistics=True) ** 2)
    grads.append([tf.zeros_like(v) if g is None else g
                  for v, g in zip(model.trainable_variables,
                                  tape.gradient(loss, model.trainable_variables))])
  for a, b in zip(*grads):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="skip_mode"):
    child_lib.SharedChild(config, skip_mode="switch")
