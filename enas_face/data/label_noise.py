"""Seeded symmetric label noise on any dataset's training split (--label_noise); numpy only.

A fraction f of the training images, drawn without replacement, each gets a label drawn
uniformly from the C - 1 other training identities (symmetric noise):

    y'_i = (y_i + u_i) mod C,  u_i ~ U{1, ..., C - 1},  for i in the flipped set

Val and test keep their labels. The truth goes to dataset.report["label_noise"]
(label_noise_indices into the training split, true_labels, noisy_labels), so a cleaning's
precision and recall can be measured against it (its manifest lists removed training
indices).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from enas_face.data.base import FaceDataset, LabelledImages


def flip_labels(labels: np.ndarray, num_classes: int, fraction: float,
                seed: int) -> tuple[np.ndarray, dict]:
  """(noisy copy of `labels`, the truth); see the module docstring."""
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f"the label noise must be a fraction in [0, 1), got {fraction!r}")
  if fraction > 0 and num_classes < 2:
    raise ValueError("label noise needs at least two identities")
  rng = np.random.default_rng([int(seed), 0x1AB3])
  flipped = np.sort(rng.permutation(len(labels))[:int(round(fraction * len(labels)))])
  noisy = labels.copy()
  if len(flipped):
    noisy[flipped] = (labels[flipped] + rng.integers(1, num_classes, len(flipped))) % num_classes
  return noisy, {"fraction": float(fraction), "seed": int(seed),
                 "label_noise_indices": flipped.tolist(),
                 "true_labels": labels[flipped].astype(int).tolist(),
                 "noisy_labels": noisy[flipped].astype(int).tolist()}


def with_label_noise(dataset: FaceDataset, fraction: float, seed: int) -> FaceDataset:
  """`dataset` with `fraction` of its (in-memory) training labels flipped; the truth in
  report["label_noise"]. fraction = 0 returns it unchanged."""
  if fraction <= 0:
    return dataset
  if not isinstance(dataset.train, LabelledImages):
    raise ValueError("label noise needs the training split in memory (not streamed)")
  labels, truth = flip_labels(dataset.train.labels, dataset.num_classes, fraction, seed)
  return dataclasses.replace(dataset, train=dataclasses.replace(dataset.train,
                                                                labels=labels.astype(np.int32)),
                             report={**dataset.report, "label_noise": truth})
