import numpy as np
import pytest

from enas_face.data import pipeline
from enas_face.data.base import LabelledImages


def split(n=24, size=16, seed=0):
  rng = np.random.default_rng(seed)
  return LabelledImages(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
                        np.arange(n, dtype=np.int32) % 4)


def batches(ds):
  return [(x.numpy(), y.numpy()) for x, y in ds]


def test_channel_statistics():
  images = np.zeros([2, 2, 2, 3], np.uint8)
  images[0] = [0, 10, 100]
  images[1] = [2, 10, 200]
  mean, std = pipeline.channel_statistics(images)
  np.testing.assert_allclose(mean, [1, 10, 150])
  np.testing.assert_allclose(std, [1, 0, 50])


def test_train_dataset_is_deterministic_per_seed_and_epoch():
  data, mean = split(), np.array([120.0, 120.0, 120.0], np.float32)
  make = lambda seed, epoch: batches(pipeline.train_dataset(
      data, 8, mean, seed=seed, epoch=epoch, pad=2, cutout=4))
  first, again = make(0, 0), make(0, 0)
  assert len(first) == 3 and first[0][0].shape == (8, 16, 16, 3) and first[0][0].dtype == np.float32
  for (xa, ya), (xb, yb) in zip(first, again):
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
  other_epoch = make(0, 1)
  assert not np.array_equal(first[0][0], other_epoch[0][0])
  # Every image appears exactly once per epoch (shuffled, labels kept with images).
  labels = np.concatenate([y for _, y in first])
  assert sorted(labels.tolist()) == sorted(data.labels.tolist())


def test_without_augmentation_images_pass_unchanged():
  data = split()
  mean = np.zeros(3, np.float32)
  (x, y), *_ = batches(pipeline.train_dataset(data, 24, mean, seed=0, epoch=0, augment=False))
  order = np.random.default_rng([0, 0]).permutation(len(data))
  np.testing.assert_array_equal(x, data.images[order].astype(np.float32))
  np.testing.assert_array_equal(y, data.labels[order])


def test_cutout_and_padding_fill_with_the_mean_colour():
  images = np.full([16, 16, 16, 3], 200, np.uint8)
  data = LabelledImages(images, np.zeros(16, np.int32))
  mean = np.array([10.0, 20.0, 30.0], np.float32)
  (x, _), = batches(pipeline.train_dataset(data, 16, mean, seed=3, epoch=0, random_flip=False,
                                            pad=0, cutout=6))
  filled = np.all(x == mean, axis=-1)
  per_image = filled.reshape(16, -1).sum(axis=1)
  assert per_image.max() == 36 and per_image.min() > 0  # a 6x6 square, clipped at borders
  assert set(np.unique(x)) <= {10.0, 20.0, 30.0, 200.0}
  (x, _), = batches(pipeline.train_dataset(data, 16, mean, seed=3, epoch=0, random_flip=False,
                                            pad=3, cutout=0))
  assert np.any(np.all(x == mean, axis=-1)), "random crops of the padded image show mean borders"


def test_batch_larger_than_split_is_an_error():
  with pytest.raises(ValueError, match="batch_size=100"):
    pipeline.train_dataset(split(), 100, np.zeros(3, np.float32), seed=0, epoch=0)
