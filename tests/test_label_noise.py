"""--label_noise: seeded symmetric label flips of any dataset's training split, the truth kept."""
import numpy as np
import pytest

from enas_face.config import DataConfig
from enas_face.data import label_noise, load_dataset


def test_flips_the_fraction_to_other_labels_and_keeps_the_truth():
  labels = np.repeat(np.arange(10), 20).astype(np.int32)
  noisy, truth = label_noise.flip_labels(labels, 10, 0.2, seed=3)
  flipped = np.array(truth["label_noise_indices"])
  assert len(flipped) == 40 and len(set(flipped.tolist())) == 40
  assert np.all(noisy[flipped] != labels[flipped])
  assert np.array_equal(np.delete(noisy, flipped), np.delete(labels, flipped))
  assert truth["true_labels"] == labels[flipped].tolist()
  assert truth["noisy_labels"] == noisy[flipped].tolist()
  assert np.all((noisy >= 0) & (noisy < 10))
  again, _ = label_noise.flip_labels(labels, 10, 0.2, seed=3)
  other, _ = label_noise.flip_labels(labels, 10, 0.2, seed=4)
  assert np.array_equal(noisy, again) and not np.array_equal(noisy, other)
  # symmetric: the wrong labels spread over the other identities
  assert len(set(truth["noisy_labels"])) > 5


def test_a_bad_fraction_is_refused():
  with pytest.raises(ValueError, match="fraction"):
    label_noise.flip_labels(np.zeros(4, np.int32), 2, 1.0, seed=0)


def test_load_dataset_applies_it_to_the_training_split_only():
  config = DataConfig(dataset="synthetic", image_size=16, synthetic_identities=6,
                      synthetic_images_per_identity=10, synthetic_heldout_identities=4,
                      synthetic_heldout_images_per_identity=4, num_pairs=20, num_folds=2)
  clean = load_dataset(config)
  noisy = load_dataset(DataConfig(**{**config.__dict__, "label_noise": 0.25}))
  truth = noisy.report["label_noise"]
  assert len(truth["label_noise_indices"]) == round(0.25 * len(clean.train))
  assert np.array_equal(noisy.train.images, clean.train.images)
  assert (noisy.train.paths is None) == (clean.train.paths is None)
  assert (noisy.train.labels != clean.train.labels).sum() == len(truth["label_noise_indices"])
  assert np.array_equal(noisy.val.labels, clean.val.labels)
  assert "label_noise" not in clean.report
