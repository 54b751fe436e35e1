"""Sampling of balanced 1:1 verification pairs (LFW-style folds)."""
from __future__ import annotations

import numpy as np

# Enumerate every candidate pair when there are at most this many; above it,
# sample by rejection, which stays fast because the candidates far outnumber
# the pairs wanted.
_MAX_ENUMERATED_PAIRS = 2_000_000


def _check_positive_int(name: str, value) -> int:
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value <= 0:
    raise ValueError(f"{name} must be a positive integer, got {value!r}")
  return int(value)


def _sample_same_pairs(groups: list[np.ndarray], count: int, rng: np.random.Generator) -> np.ndarray:
  """`count` distinct unordered pairs of different images of one identity."""
  sizes = np.array([len(members) for members in groups], dtype=np.int64)
  pairs_per_group = sizes * (sizes - 1) // 2
  total = int(pairs_per_group.sum())
  if total < count:
    raise ValueError(
        f"num_pairs asks for {count} same-identity pairs but the labels only allow {total} "
        "distinct ones; lower num_pairs or provide more images per identity")
  if total <= _MAX_ENUMERATED_PAIRS or count > total // 2:
    candidates = []
    for members in groups:
      if len(members) >= 2:
        first, second = np.triu_indices(len(members), k=1)
        candidates.append(np.stack([members[first], members[second]], axis=1))
    candidates = np.concatenate(candidates)
    return candidates[np.sort(rng.choice(len(candidates), size=count, replace=False))]
  chosen: set[tuple[int, int]] = set()
  weights = pairs_per_group / total
  while len(chosen) < count:
    for group_index in rng.choice(len(groups), size=count - len(chosen), p=weights):
      members = groups[group_index]
      first, second = rng.choice(len(members), size=2, replace=False)
      first, second = sorted((int(members[first]), int(members[second])))
      chosen.add((first, second))
      if len(chosen) == count:
        break
  return np.array(sorted(chosen), dtype=np.int64)


def _sample_different_pairs(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
  """`count` distinct unordered pairs of images of two different identities.

  labels: identity indices 0..K-1 (as from np.unique(..., return_inverse=True)).
  """
  num_images = len(labels)
  _, group_sizes = np.unique(labels, return_counts=True)
  total = (num_images * (num_images - 1) - int((group_sizes * (group_sizes - 1)).sum())) // 2
  if total < count:
    raise ValueError(
        f"num_pairs asks for {count} different-identity pairs but the labels only allow {total} "
        "distinct ones; lower num_pairs or provide more images")
  if total <= _MAX_ENUMERATED_PAIRS or count > total // 2:
    candidates = []
    for identity in range(int(labels.max())):
      members = np.flatnonzero(labels == identity)
      later = np.flatnonzero(labels > identity)
      candidates.append(np.stack(np.meshgrid(members, later, indexing="ij"), axis=-1).reshape(-1, 2))
    candidates = np.concatenate(candidates)
    return candidates[np.sort(rng.choice(len(candidates), size=count, replace=False))]
  chosen: set[tuple[int, int]] = set()
  while len(chosen) < count:
    draws = rng.integers(0, num_images, size=(2 * (count - len(chosen)) + 8, 2))
    for first, second in draws.tolist():
      if labels[first] != labels[second]:
        chosen.add((min(first, second), max(first, second)))
        if len(chosen) == count:
          break
  return np.array(sorted(chosen), dtype=np.int64)


def make_verification_pairs(labels: np.ndarray, num_pairs: int, num_folds: int = 10,
                            seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Balanced verification pairs ordered by fold (LFW convention).

  Returns (pairs int64 [num_pairs, 2] of indices into `labels`, is_same bool
  [num_pairs]). Each fold holds num_pairs / num_folds rows: its same-identity
  pairs first, then as many different-identity pairs. No pair appears twice
  (in either order) and no image is paired with itself. Deterministic in seed.
  """
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f"labels must be a 1-D array, got shape {labels.shape}")
  num_pairs = _check_positive_int("num_pairs", num_pairs)
  num_folds = _check_positive_int("num_folds", num_folds)
  if num_pairs % (2 * num_folds):
    raise ValueError(
        f"num_pairs must be divisible by 2 * num_folds = {2 * num_folds} so every fold holds "
        f"equal numbers of same and different pairs, got num_pairs={num_pairs}")
  identities, inverse = np.unique(labels, return_inverse=True)
  if len(identities) < 2:
    raise ValueError(f"labels must contain at least 2 identities, got {len(identities)}")
  groups = [np.flatnonzero(inverse == k) for k in range(len(identities))]
  rng = np.random.default_rng(seed)
  half = num_pairs // 2
  same = rng.permutation(_sample_same_pairs(groups, half, rng))
  different = rng.permutation(_sample_different_pairs(inverse, half, rng))
  # Randomise which image of a pair comes first.
  same = np.where(rng.random((half, 1)) < 0.5, same, same[:, ::-1])
  different = np.where(rng.random((half, 1)) < 0.5, different, different[:, ::-1])
  per_fold = half // num_folds
  pairs, is_same = [], []
  for fold in range(num_folds):
    rows = slice(fold * per_fold, (fold + 1) * per_fold)
    pairs += [same[rows], different[rows]]
    is_same += [np.ones(per_fold, dtype=bool), np.zeros(per_fold, dtype=bool)]
  return np.concatenate(pairs).astype(np.int64), np.concatenate(is_same)
