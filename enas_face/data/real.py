"""Real face data -> `FaceDataset`: identity filtering, held-out pairs, 8:1:1 splits.

Every reader (image folders, aligned TFRecords, InsightFace RecordIO) produces a
`LabelledCollection`; `assemble` turns one into the train/val/test splits the
trainer uses, plus verification pairs (from a pairs file, or from identities
held out of training). Everything is in memory: fine for LFW / ORL / CASIA-size
sets at the CPU-friendly input sizes; larger tfrecord: / insightface: sets
stream (data/stream.py, --stream) under the same identity rules (choose_identities).

The dataset's `report` records what happened to every input image: counts per
identity, rejects with their reasons, identities dropped and why.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
from absl import logging

from enas_face.config import ConfigError, DataConfig
from enas_face.data.base import FaceDataset, LabelledImages, VerificationPairs, split_per_identity
from enas_face.data.pairs import make_verification_pairs


@dataclasses.dataclass
class LabelledCollection:
  """Images read from one source. labels index `identity_names`; `report` is JSON-able."""
  images: np.ndarray          # uint8 [N, S, S, 3]
  labels: np.ndarray          # int64 [N]
  identity_names: list[str]
  paths: list[str]            # per image, relative to the source
  report: dict


def fit_square(image: np.ndarray, size: int) -> np.ndarray:
  """Centre crop to a square of side min(H, W), then resize to size x size.

  Area interpolation when shrinking (no aliasing), bilinear when enlarging.
  """
  height, width = image.shape[:2]
  side = min(height, width)
  top, left = (height - side) // 2, (width - side) // 2
  square = image[top:top + side, left:left + side]
  if side == size:
    return np.ascontiguousarray(square)
  interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
  return cv2.resize(square, (size, size), interpolation=interpolation)


def order_by_fold(is_same: np.ndarray, num_folds: int) -> np.ndarray:
  """Permutation that makes contiguous fold blocks each hold 1/F of the same and
  of the different pairs, keeping the file's order within each class.

  The j-th same pair (of N_s) goes to fold floor(j F / N_s), likewise the
  different ones; rows are then stably sorted by fold. LFW View 2's pairs.txt
  is already in that order (unchanged); View 1's files list all same pairs
  first, which contiguous folds would otherwise split into single-class folds.
  """
  is_same = np.asarray(is_same, dtype=bool)
  fold = np.empty(len(is_same), dtype=np.int64)
  for value in (True, False):
    rows = np.flatnonzero(is_same == value)
    fold[rows] = np.arange(len(rows)) * num_folds // max(len(rows), 1)
  return np.argsort(fold, kind="stable")


def ordered_pairs(images: np.ndarray, pairs: np.ndarray, is_same: np.ndarray,
                  num_folds: int, paths=None) -> VerificationPairs:
  """VerificationPairs with rows reordered by `order_by_fold` (`paths`: the images')."""
  order = order_by_fold(is_same, num_folds)
  return VerificationPairs(images, np.asarray(pairs, np.int64)[order],
                           np.asarray(is_same, bool)[order], num_folds, paths)


def heldout_pairs(images: np.ndarray, labels: np.ndarray, config: DataConfig,
                  paths=None) -> VerificationPairs:
  """Balanced pairs (config.num_pairs, seeded) of the held-out identities' images."""
  try:
    pairs, is_same = make_verification_pairs(labels, config.num_pairs, config.num_folds,
                                             config.seed)
  except ValueError as e:
    raise ConfigError(f"--num_pairs={config.num_pairs} from {len(np.unique(labels))} held-out "
                      f"identities ({len(labels)} images): {e}; lower --num_pairs or raise "
                      "--heldout_fraction") from e
  return VerificationPairs(images, pairs, is_same, config.num_folds, paths)


@dataclasses.dataclass(frozen=True)
class IdentityChoice:
  """Which identities are trained on and which are held out for pairs (None: --pairs given);
  too_few: those below --min_images_per_identity (not trained on; not those excluded for
  the pairs)."""
  usable: np.ndarray            # original labels trained on, sorted
  heldout: np.ndarray | None    # original labels held out for verification pairs
  report: dict
  too_few: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))

  def relabel(self, num_labels: int) -> np.ndarray:
    """int64 [num_labels]: original label -> training label 0..C-1, or -1 if not trained on."""
    table = np.full(num_labels, -1, dtype=np.int64)
    table[self.usable] = np.arange(len(self.usable))
    return table


def named_in_pairs(names: list[str], pair_identities: frozenset[str]) -> set[int]:
  """The labels of the identities whose name a --pairs set names."""
  return {i for i, n in enumerate(names) if n in pair_identities}


def choose_identities(counts: np.ndarray, names: list[str], config: DataConfig, name: str,
                      hold_out: bool, pair_identities: frozenset[str] = frozenset()
                      ) -> IdentityChoice:
  """The identity rules of every real dataset, from the image count of each identity.

  Identities named in `pair_identities` (when config.exclude_pair_identities) and those
  with fewer than config.min_images_per_identity images are not trained on. With
  `hold_out` (no --pairs), round(heldout_fraction * K) (at least 2) of the remaining K
  identities, chosen with config.seed, are held out for pairs.
  """
  excluded = named_in_pairs(names, pair_identities) if config.exclude_pair_identities else set()
  too_few = {i for i, c in enumerate(counts)
             if i not in excluded and 0 < c < config.min_images_per_identity}
  usable = np.array([i for i, c in enumerate(counts)
                     if c and i not in excluded and i not in too_few], dtype=np.int64)
  report = dict(identities_in_pairs_excluded=len([i for i in excluded if counts[i]]),
                images_in_pairs_identities_excluded=int(sum(counts[i] for i in excluded)),
                identities_below_min_images=len(too_few),
                images_below_min_images=int(sum(counts[i] for i in too_few)),
                min_images_per_identity=config.min_images_per_identity)
  heldout = None
  if hold_out:
    rng = np.random.default_rng(config.seed)
    num_heldout = max(2, int(round(config.heldout_fraction * len(usable))))
    if len(usable) - num_heldout < 2:
      raise ConfigError(f"{name}: {len(usable)} identities with >= "
                        f"{config.min_images_per_identity} images; need at least "
                        f"{num_heldout + 2} to hold out {num_heldout} for pairs and train on 2")
    heldout = np.sort(rng.permutation(usable)[:num_heldout])
    usable = np.setdiff1d(usable, heldout)
    report["heldout_identities"] = [names[i] for i in heldout]
  if len(usable) < 2:
    raise ConfigError(f"{name}: only {len(usable)} identities left to train on "
                      f"(--min_images_per_identity={config.min_images_per_identity})")
  return IdentityChoice(usable, heldout, report, np.array(sorted(too_few), dtype=np.int64))


def assemble(collection: LabelledCollection, config: DataConfig, name: str,
             pairs: VerificationPairs | None = None,
             pair_identities: frozenset[str] = frozenset()) -> FaceDataset:
  """FaceDataset of a collection: identities by `choose_identities`, pairs from the
  held-out identities when `pairs` is None; training identities are relabelled
  0..C-1 and split 8:1:1 per identity.
  """
  report = dict(collection.report)
  counts = np.bincount(collection.labels, minlength=len(collection.identity_names))
  names = collection.identity_names
  choice = choose_identities(counts, names, config, name, pairs is None, pair_identities)
  report.update(choice.report)
  usable = choice.usable
  if pairs is None:
    members = np.flatnonzero(np.isin(collection.labels, choice.heldout))
    pairs = heldout_pairs(collection.images[members], collection.labels[members], config,
                          np.asarray(collection.paths, dtype=str)[members])
  members = np.flatnonzero(np.isin(collection.labels, usable))
  relabel = choice.relabel(len(names))
  kept = LabelledImages(collection.images[members],
                        relabel[collection.labels[members]].astype(np.int32),
                        np.asarray(collection.paths, dtype=str)[members])
  train, val, test = split_per_identity(kept.labels, (0.8, 0.1, 0.1), config.seed)
  report.update(train_identities=len(usable), train_images=len(train), val_images=len(val),
                test_images=len(test), pairs=len(pairs), pair_images=int(pairs.images.shape[0]),
                class_names=[names[i] for i in usable])
  logging.info("%s: %d identities (%d train / %d val / %d test images), %d pairs over %d images; "
               "%d rejected images; %d identities below %d images, %d named in the pairs excluded",
               name, len(usable), len(train), len(val), len(test), len(pairs),
               pairs.images.shape[0], len(report.get("rejects", [])),
               report["identities_below_min_images"],
               config.min_images_per_identity, report["identities_in_pairs_excluded"])
  return FaceDataset(name=name, train=kept.take(train), val=kept.take(val),
                     test=kept.take(test),
                     num_classes=len(usable), pairs=pairs, report=report)
