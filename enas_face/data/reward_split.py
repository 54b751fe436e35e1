"""Reward identities: a validation set of its own for verification rewards.

A search that rewards verification accuracy must not read the pairs the final evaluation
reports on (it would select on the test set). `hold_out_identities` takes K training
identities out of the training data, all their images, and makes balanced 1:1 pairs of
them; the test pairs' identities were never training identities, so the three sets
(training, reward, test) are disjoint.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from enas_face.config import ConfigError
from enas_face.data.base import FaceDataset, LabelledImages, VerificationPairs
from enas_face.data.pairs import make_verification_pairs


def hold_out_identities(dataset: FaceDataset, num_identities: int, num_pairs: int,
                        num_folds: int, seed: int) -> tuple[FaceDataset, VerificationPairs]:
  """(the dataset without K identities, relabelled 0..C-K-1; pairs of those K identities).

  The K identities are drawn with `seed` among those with >= 2 images in train+val+test.
  """
  if dataset.streamed:
    raise ConfigError(f"--reward_identities={num_identities} with a streamed training split "
                      "(--stream): holding identities out of a stream is not supported; use "
                      "--reward_metric=classification, or --stream=never if the data fit in memory")
  parts = (dataset.train, dataset.val, dataset.test)
  labels = np.concatenate([p.labels for p in parts])
  identities, counts = np.unique(labels, return_counts=True)
  eligible = identities[counts >= 2]
  if num_identities < 2 or num_identities > len(eligible) - 2:
    raise ConfigError(
        f"--reward_identities={num_identities}: need 2 <= K <= {len(eligible) - 2} (the "
        f"dataset has {len(eligible)} training identities with >= 2 images, and >= 2 must stay "
        "for training)")
  rng = np.random.default_rng([seed, 4049])
  held = np.sort(rng.choice(eligible, size=num_identities, replace=False))
  keep = np.setdiff1d(identities, held)
  relabel = np.full(int(identities.max()) + 1, -1, np.int64)
  relabel[keep] = np.arange(len(keep))

  def without(part: LabelledImages) -> LabelledImages:
    mask = np.isin(part.labels, keep)
    return part.take(mask, relabel[part.labels[mask]].astype(part.labels.dtype))

  images = np.concatenate([p.images[np.isin(p.labels, held)] for p in parts])
  held_labels = np.concatenate([p.labels[np.isin(p.labels, held)] for p in parts])
  try:
    pairs, is_same = make_verification_pairs(held_labels, num_pairs, num_folds, seed)
  except ValueError as error:
    raise ConfigError(f"--reward_pairs={num_pairs} with --reward_identities={num_identities}: "
                      f"{error}") from None
  report = dict(dataset.report, reward_identities=[int(i) for i in held],
                reward_images=int(len(images)), reward_pairs=int(len(pairs)))
  reduced = dataclasses.replace(dataset, train=without(dataset.train), val=without(dataset.val),
                                test=without(dataset.test), num_classes=int(len(keep)),
                                report=report)
  return reduced, VerificationPairs(images, pairs, is_same, num_folds)
