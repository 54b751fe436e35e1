import numpy as np
import pytest
import tensorflow as tf

from enas_face.models import ops
from enas_face.spaces import enas_macro


def test_registry_covers_the_search_space():
  assert set(ops.OP_REGISTRY) == set(enas_macro.OPS)
  x = tf.random.normal([2, 8, 8, 6])
  for name in enas_macro.OPS:
    layer = ops.build_op(name, 6, name)
    assert layer(x, training=True).shape == (2, 8, 8, 6)
  with pytest.raises(ValueError, match="unknown op 'conv7x7'"):
    ops.build_op("conv7x7", 4, "x")


def test_factorized_reduction_halves_and_sees_both_phases():
  layer = ops.FactorizedReduction(8)
  x = tf.random.normal([2, 8, 8, 4])
  y = layer(x, training=False)
  assert y.shape == (2, 4, 4, 8)
  # Path b reads the odd pixels: changing only x[:, 1::2, 1::2] must change the output.
  x2 = tf.tensor_scatter_nd_add(x, [[0, 1, 1, 0]], [5.0])
  assert not np.allclose(layer(x2, training=False), y)
  with pytest.raises(ValueError, match="even"):
    ops.FactorizedReduction(5)


def test_channel_standardization():
  layer = ops.ChannelStandardization()
  x = tf.constant(np.full([1, 2, 2, 3], [10.0, 20.0, 30.0], np.float32))
  layer.build(x.shape)
  layer.set_statistics([10, 10, 10], [1, 2, 4])
  np.testing.assert_allclose(layer(x)[0, 0, 0], [0.0, 5.0, 5.0])


def test_dropblock_is_identity_at_inference_and_drops_blocks_in_training():
  x = tf.ones([4, 32, 32, 8])
  layer = ops.DropBlock(keep_prob=0.8, block_size=5, seed=1)
  np.testing.assert_array_equal(layer(x, training=False), x)
  y = layer(x, training=True).numpy()
  dropped = np.mean(y == 0)
  assert 0.12 < dropped < 0.28, dropped  # ~ 1 - keep_prob
  # Survivors are rescaled so that the mean activation is kept: y = x * numel / sum(mask).
  kept = y[y > 0]
  np.testing.assert_allclose(kept, kept[0])
  assert y.mean() == pytest.approx(1.0, rel=1e-5)
  # Dropped units come in blocks: a dropped pixel has dropped neighbours.
  zero = y[0, :, :, 0] == 0
  rows, cols = np.nonzero(zero[1:-1, 1:-1])
  neighbours = [zero[r + 1 + dr, c + 1 + dc] for r, c in zip(rows, cols)
                for dr, dc in ((0, 1), (1, 0), (0, -1), (-1, 0))]
  assert np.mean(neighbours) > 0.6


def test_dropblock_keep_prob_one_is_identity():
  x = tf.random.normal([2, 4, 4, 3])
  np.testing.assert_array_equal(ops.DropBlock(1.0, 3)(x, training=True), x)


@pytest.mark.parametrize("kind", ops.EmbeddingHead.KINDS)
def test_embedding_head_shapes(kind):
  head = ops.EmbeddingHead(16, kind)
  assert head(tf.random.normal([3, 4, 4, 8]), training=True).shape == (3, 16)
