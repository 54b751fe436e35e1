"""Face verification (1:1) and identification (1:N) metrics in numpy + scikit-learn.

Conventions: a pair is predicted "same" when its cosine score s exceeds the
threshold t (s > t) in the accuracy functions; `tar_at_far` follows
sklearn.metrics.roc_curve, which accepts s >= t. Scores are float64, labels
`is_same` are booleans (0/1 integers are accepted).
"""
from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import KFold


# ----------------------------------------------------------------- validation
def _as_scores(scores, name: str = "scores") -> np.ndarray:
  """`scores` as a finite float64 vector with at least one entry."""
  array = np.asarray(scores, dtype=np.float64)
  if array.ndim != 1:
    raise ValueError(f"{name} must be a 1-D array, got shape {array.shape}")
  if array.size == 0:
    raise ValueError(f"{name} must not be empty, got 0 entries")
  if not np.all(np.isfinite(array)):
    bad = int(np.count_nonzero(~np.isfinite(array)))
    raise ValueError(f"{name} must be finite, got {bad} NaN/inf entries out of {array.size}")
  return array


def _as_labels(labels, length: int, name: str = "is_same") -> np.ndarray:
  """`labels` as a bool vector of `length` entries, each 0/1 or False/True."""
  array = np.asarray(labels)
  if array.ndim != 1:
    raise ValueError(f"{name} must be a 1-D array, got shape {array.shape}")
  if array.shape[0] != length:
    raise ValueError(f"{name} must have {length} entries (one per score), got {array.shape[0]}")
  if array.dtype != np.bool_:
    if array.size and not np.isin(array, (0, 1)).all():
      raise ValueError(f"{name} must hold booleans or 0/1, got values {np.unique(array)[:10].tolist()}")
    array = array.astype(np.bool_)
  return array


def _scores_and_labels(scores, is_same, both_classes: bool = False) -> tuple[np.ndarray, np.ndarray]:
  scores = _as_scores(scores)
  is_same = _as_labels(is_same, scores.shape[0])
  if both_classes:
    num_same = int(is_same.sum())
    if num_same == 0 or num_same == is_same.size:
      raise ValueError(
          f"is_same must contain both same (True) and different (False) pairs, "
          f"got {num_same} same and {is_same.size - num_same} different")
  return scores, is_same


def _as_embeddings(embeddings, name: str) -> np.ndarray:
  array = np.asarray(embeddings)
  if array.ndim != 2:
    raise ValueError(f"{name} must be a 2-D array [N, D], got shape {array.shape}")
  if not np.issubdtype(array.dtype, np.floating):
    array = array.astype(np.float64)
  return array


# -------------------------------------------------------------------- scores
def l2_normalize(x, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
  """x / max(||x||_2, eps) along `axis` (zero vectors stay zero)."""
  x = np.asarray(x)
  if not np.issubdtype(x.dtype, np.floating):
    x = x.astype(np.float64)
  norm = np.linalg.norm(x, axis=axis, keepdims=True)
  return x / np.maximum(norm, eps)


def _as_pairs(pairs, num_embeddings: int) -> np.ndarray:
  """`pairs` as an integer [P, 2] array of indices in 0..num_embeddings-1."""
  pairs = np.asarray(pairs)
  if pairs.ndim != 2 or pairs.shape[1] != 2:
    raise ValueError(f"pairs must be an integer array [P, 2], got shape {pairs.shape}")
  if pairs.size == 0:
    return pairs
  if not np.issubdtype(pairs.dtype, np.integer):
    raise ValueError(f"pairs must hold integer indices, got dtype {pairs.dtype}")
  if pairs.min() < 0 or pairs.max() >= num_embeddings:
    raise ValueError(
        f"pairs must index embeddings in 0..{num_embeddings - 1}, got indices in {pairs.min()}..{pairs.max()}")
  return pairs


def cosine_scores(embeddings: np.ndarray, pairs: np.ndarray) -> np.ndarray:
  """s_p = <e_a, e_b> / (||e_a|| ||e_b||) for every pair p = (a, b); float64 [P]."""
  embeddings = _as_embeddings(embeddings, "embeddings")
  pairs = _as_pairs(pairs, embeddings.shape[0])
  if pairs.size == 0:
    return np.zeros((0,), np.float64)
  unit = l2_normalize(embeddings.astype(np.float64), axis=1)
  return np.einsum("pd,pd->p", unit[pairs[:, 0]], unit[pairs[:, 1]])


# ------------------------------------------------------------- verification
def accuracy_at_threshold(scores, is_same, threshold: float) -> float:
  """acc(t) = mean_p[(s_p > t) == same_p]."""
  scores, is_same = _scores_and_labels(scores, is_same)
  return float(np.mean((scores > threshold) == is_same))


def _candidate_thresholds(scores: np.ndarray) -> np.ndarray:
  """Midpoints between sorted unique scores u, plus one end below u_0 and one above u_-1.

  The ends mirror the outermost gaps: u_0 - (u_1 - u_0)/2 and
  u_-1 + (u_-1 - u_-2)/2 (u_0 -/+ 0.5 when all scores are equal), so "accept
  all" and "reject all" are candidates.
  """
  unique = np.unique(scores)
  if unique.size == 1:
    return np.array([unique[0] - 0.5, unique[0] + 0.5])
  midpoints = (unique[:-1] + unique[1:]) / 2
  lower = unique[0] - (unique[1] - unique[0]) / 2
  upper = unique[-1] + (unique[-1] - unique[-2]) / 2
  return np.concatenate([[lower], midpoints, [upper]])


def best_threshold(scores, is_same) -> float:
  """argmax_t acc(t) over the candidate thresholds (see _candidate_thresholds).

  Ties go to the smallest maximising candidate. O(P log P): for each t,
  correct(t) = #{same: s > t} + #{different: s <= t}, counted by binary search.
  """
  scores, is_same = _scores_and_labels(scores, is_same)
  candidates = _candidate_thresholds(scores)
  same_sorted = np.sort(scores[is_same])
  different_sorted = np.sort(scores[~is_same])
  true_accepts = same_sorted.size - np.searchsorted(same_sorted, candidates, side="right")
  true_rejects = np.searchsorted(different_sorted, candidates, side="right")
  return float(candidates[int(np.argmax(true_accepts + true_rejects))])


def kfold_verification(scores, is_same, num_folds: int = 10) -> dict:
  """LFW protocol: for each contiguous fold k, t_k = best_threshold on the other folds, acc_k = acc(t_k) on fold k.

  Folds come from sklearn KFold(num_folds, shuffle=False) (the first P mod F
  folds get one extra pair). Returns {"accuracy": mean_k acc_k, "std": std_k
  acc_k (population, ddof=0), "fold_accuracies": [acc_k], "thresholds": [t_k]}.
  """
  scores, is_same = _scores_and_labels(scores, is_same)
  if isinstance(num_folds, bool) or not isinstance(num_folds, (int, np.integer)):
    raise ValueError(f"num_folds must be an integer, got {num_folds!r}")
  if not 2 <= num_folds <= scores.size:
    raise ValueError(f"num_folds must be in 2..{scores.size} (the number of pairs), got {num_folds}")
  fold_accuracies, thresholds = [], []
  for train_index, test_index in KFold(n_splits=int(num_folds), shuffle=False).split(scores):
    threshold = best_threshold(scores[train_index], is_same[train_index])
    thresholds.append(threshold)
    fold_accuracies.append(accuracy_at_threshold(scores[test_index], is_same[test_index], threshold))
  return {"accuracy": float(np.mean(fold_accuracies)),
          "std": float(np.std(fold_accuracies)),
          "fold_accuracies": fold_accuracies,
          "thresholds": thresholds}


def tar_at_far(scores, is_same, far: float = 1e-3) -> float:
  """TAR(t*) = #{same: s >= t*} / #same at the most permissive ROC operating point with FAR(t*) <= far.

  FAR(t) = #{different: s >= t} / #different. Operating points come from
  sklearn.metrics.roc_curve (no interpolation): the result is
  max{TPR_i : FPR_i <= far}, i.e. the lowest threshold whose FAR does not
  exceed `far`. With N different pairs only FARs in {0, 1/N, 2/N, ...} are
  achievable; if far < 1/N the requested FAR is not resolvable and the
  result is the TAR at the strictest achievable FAR = 0 (the fraction of same
  pairs scoring above every different pair).
  """
  scores, is_same = _scores_and_labels(scores, is_same, both_classes=True)
  far = float(far)
  if not 0.0 <= far <= 1.0:
    raise ValueError(f"far must be in [0, 1], got {far}")
  false_accept_rates, true_accept_rates, _ = roc_curve(is_same, scores, drop_intermediate=False)
  admissible = false_accept_rates <= far * (1 + 1e-9)
  return float(np.max(true_accept_rates[admissible]))


def roc_auc(scores, is_same) -> float:
  """Area under the ROC curve = P(s_same > s_different) + P(tie)/2 (sklearn roc_auc_score)."""
  scores, is_same = _scores_and_labels(scores, is_same, both_classes=True)
  return float(roc_auc_score(is_same, scores))


def _far_key(far: float) -> str:
  """'tar_at_far_' + far in short scientific form, e.g. 1e-3 -> 'tar_at_far_1e-3'."""
  mantissa, exponent = f"{float(far):e}".split("e")
  mantissa = mantissa.rstrip("0").rstrip(".")
  return f"tar_at_far_{mantissa}e{int(exponent)}"


def verification_report(embeddings, pairs, is_same, num_folds: int = 10,
                        far: float | tuple[float, ...] = 1e-3) -> dict:
  """Cosine-score the pairs and summarise: k-fold accuracy/std, TAR@FAR, ROC AUC, number of pairs.

  Keys: verification_accuracy, verification_std, tar_at_far_<far> (e.g.
  tar_at_far_1e-3; one per value when `far` is a sequence), roc_auc, num_pairs.
  """
  scores = cosine_scores(embeddings, pairs)
  scores, is_same = _scores_and_labels(scores, is_same, both_classes=True)
  folds = kfold_verification(scores, is_same, num_folds=num_folds)
  report = {"verification_accuracy": folds["accuracy"], "verification_std": folds["std"]}
  for value in np.atleast_1d(far):
    report[_far_key(value)] = tar_at_far(scores, is_same, far=value)
  report.update(roc_auc=roc_auc(scores, is_same), num_pairs=int(scores.size))
  return report


# ------------------------------------------------------------ identification
def identification_top1(gallery_embeddings, gallery_labels, probe_embeddings, probe_labels) -> float:
  """Closed-set top-1 rate: mean_q[label(argmax_c <p_q, c_c>) == y_q].

  p_q are L2-normalised probes; the centroid of identity c is
  c_c = normalize(mean_{g: y_g = c} normalize(e_g)). A probe whose identity
  has no gallery image counts as a miss. Ties go to the smallest label.
  """
  gallery = _as_embeddings(gallery_embeddings, "gallery_embeddings")
  probes = _as_embeddings(probe_embeddings, "probe_embeddings")
  gallery_labels = np.asarray(gallery_labels)
  probe_labels = np.asarray(probe_labels)
  if gallery.shape[0] == 0:
    raise ValueError("gallery_embeddings must not be empty, got 0 rows")
  if probes.shape[0] == 0:
    raise ValueError("probe_embeddings must not be empty, got 0 rows")
  if gallery_labels.shape != (gallery.shape[0],):
    raise ValueError(
        f"gallery_labels must have shape ({gallery.shape[0]},) to match gallery_embeddings, "
        f"got {gallery_labels.shape}")
  if probe_labels.shape != (probes.shape[0],):
    raise ValueError(
        f"probe_labels must have shape ({probes.shape[0]},) to match probe_embeddings, got {probe_labels.shape}")
  if gallery.shape[1] != probes.shape[1]:
    raise ValueError(
        f"probe_embeddings must have the gallery's dimension {gallery.shape[1]}, got {probes.shape[1]}")
  identities, inverse = np.unique(gallery_labels, return_inverse=True)
  unit_gallery = l2_normalize(gallery.astype(np.float64), axis=1)
  sums = np.zeros((identities.size, gallery.shape[1]), np.float64)
  np.add.at(sums, inverse, unit_gallery)
  centroids = l2_normalize(sums / np.bincount(inverse)[:, None], axis=1)
  similarities = l2_normalize(probes.astype(np.float64), axis=1) @ centroids.T
  predicted = identities[np.argmax(similarities, axis=1)]
  return float(np.mean(predicted == probe_labels))


# ----------------------------------------------------------------- baseline
def pca_embeddings(train_images: np.ndarray, images: np.ndarray, num_components: int = 64,
                   seed: int = 0) -> np.ndarray:
  """Pixel-PCA baseline: z = W^T (x - mu), with mu, W fit by sklearn PCA (whiten=False) on train_images.

  Images are flattened to float32 vectors x = pixels / 255. num_components is
  clipped to min(n_train, n_features). Returns float32 [N, k].
  """
  train_images = np.asarray(train_images)
  images = np.asarray(images)
  if train_images.ndim < 2 or train_images.shape[0] < 2:
    raise ValueError(f"train_images must be [N, ...] with N >= 2 images, got shape {train_images.shape}")
  if images.ndim < 1:
    raise ValueError(f"images must be [N, ...], got shape {images.shape}")
  if images.shape[1:] != train_images.shape[1:]:
    raise ValueError(
        f"images must have the per-image shape of train_images {train_images.shape[1:]}, got {images.shape[1:]}")
  if isinstance(num_components, bool) or not isinstance(num_components, (int, np.integer)) or num_components < 1:
    raise ValueError(f"num_components must be a positive integer, got {num_components!r}")
  train_flat = train_images.reshape(train_images.shape[0], -1).astype(np.float32) / 255.0
  flat = images.reshape(images.shape[0], -1).astype(np.float32) / 255.0
  components = int(min(num_components, *train_flat.shape))
  pca = PCA(n_components=components, whiten=False, random_state=seed)
  pca.fit(train_flat)
  return pca.transform(flat).astype(np.float32)


# ------------------------------------------------------- insightface protocol
PROTOCOLS = ("exact", "insightface", "both")
INSIGHTFACE_ACCURACY_THRESHOLDS = np.arange(0, 4, 0.01)   # insightface's evaluate()
INSIGHTFACE_VAL_THRESHOLDS = np.arange(0, 4, 0.001)       # its calculate_val() grid


def squared_distances(embeddings, pairs) -> np.ndarray:
  """d_p = ||u_a - u_b||^2 = 2 - 2 cos(e_a, e_b) for every pair p = (a, b), u = e / ||e||."""
  embeddings = _as_embeddings(embeddings, "embeddings")
  pairs = _as_pairs(pairs, embeddings.shape[0])
  unit = l2_normalize(embeddings.astype(np.float64), axis=1)
  return np.sum(np.square(unit[pairs[:, 0]] - unit[pairs[:, 1]]), axis=1)


def _accepted(distances: np.ndarray, thresholds) -> np.ndarray:
  """#{p: d_p < t_i} for every threshold t_i (pair p predicted same when d_p < t)."""
  return np.searchsorted(np.sort(distances), np.asarray(thresholds, np.float64), side="left")


def insightface_best_threshold(distances, is_same,
                               thresholds=INSIGHTFACE_ACCURACY_THRESHOLDS) -> float:
  """argmax_i acc(t_i), acc(t) = mean_p[(d_p < t) == same_p], over the fixed grid; ties go to
  the first (smallest) threshold (np.argmax, as insightface's calculate_roc)."""
  distances, is_same = _scores_and_labels(distances, is_same)
  different = distances[~is_same]
  correct = _accepted(distances[is_same], thresholds) + different.size - _accepted(different,
                                                                                    thresholds)
  return float(np.asarray(thresholds)[int(np.argmax(correct))])


def val_far(distances, is_same, threshold: float) -> tuple[float, float]:
  """VAL(t) = #{same: d < t} / #same, FAR(t) = #{different: d < t} / #different."""
  distances, is_same = _scores_and_labels(distances, is_same, both_classes=True)
  accept = distances < threshold
  return float(np.mean(accept[is_same])), float(np.mean(accept[~is_same]))


def threshold_at_far(distances, is_same, far: float,
                     thresholds=INSIGHTFACE_VAL_THRESHOLDS) -> float:
  """insightface's calculate_val rule: FAR_i = FAR(t_i) on the grid (non-decreasing in i).
  If max_i FAR_i < far: t = 0 (accept nothing). Else, with i the last index with FAR_i <= far,
  t = t_i + (t_{i+1} - t_i) (far - FAR_i) / (FAR_{i+1} - FAR_i) (linear interpolation of t
  against FAR: scipy interp1d(FAR, t, 'slinear') as insightface calls it; FAR_i has runs of
  equal values, which older scipy accepted (its interval search takes the last of a run; scipy
  1.17 refuses duplicates)),
  or t_i when FAR_i = far or i is the last grid point."""
  thresholds = np.asarray(thresholds, np.float64)
  distances, is_same = _scores_and_labels(distances, is_same, both_classes=True)
  different = distances[~is_same]
  rates = _accepted(different, thresholds) / different.size
  if rates.max() < far:
    return 0.0
  i = int(np.searchsorted(rates, far, side="right")) - 1
  if i < 0:  # FAR_0 > far: the grid starts above the target
    return float(thresholds[0])
  if i == len(rates) - 1 or rates[i] == far:
    return float(thresholds[i])
  step = (far - rates[i]) / (rates[i + 1] - rates[i])
  return float(thresholds[i] + step * (thresholds[i + 1] - thresholds[i]))


def insightface_verification(distances, is_same, num_folds: int = 10, far: float = 1e-3) -> dict:
  """insightface's LFW/CFP/AgeDB protocol on squared distances of unit embeddings.

  Folds: KFold(num_folds, shuffle=False) over the pairs in their order. Per fold k:
  t_k = insightface_best_threshold on the other folds (grid 0..4 step 0.01, same iff
  d < t), acc_k at t_k on fold k; t'_k = threshold_at_far on the other folds (grid step
  0.001), VAL_k, FAR_k = val_far(t'_k) on fold k. Returns accuracy = mean acc_k, std =
  std acc_k (ddof 0), val = mean VAL_k, val_std, far = mean FAR_k, thresholds [t_k].
  """
  distances, is_same = _scores_and_labels(distances, is_same, both_classes=True)
  if not 2 <= num_folds <= distances.size:
    raise ValueError(f"num_folds must be in 2..{distances.size} (the number of pairs), "
                     f"got {num_folds}")
  accuracies, thresholds, vals, fars = [], [], [], []
  for train, test in KFold(n_splits=int(num_folds), shuffle=False).split(distances):
    threshold = insightface_best_threshold(distances[train], is_same[train])
    thresholds.append(threshold)
    accuracies.append(float(np.mean((distances[test] < threshold) == is_same[test])))
    at_far = threshold_at_far(distances[train], is_same[train], far)
    test_same = is_same[test]
    accept = distances[test] < at_far
    # A fold without one of the classes counts that rate as 0 (insightface divides by 0).
    vals.append(float(np.mean(accept[test_same])) if test_same.any() else 0.0)
    fars.append(float(np.mean(accept[~test_same])) if (~test_same).any() else 0.0)
  return {"accuracy": float(np.mean(accuracies)), "std": float(np.std(accuracies)),
          "val": float(np.mean(vals)), "val_std": float(np.std(vals)),
          "far": float(np.mean(fars)), "thresholds": thresholds}


def _val_key(far: float) -> str:
  """'val_at_far_' + far in short scientific form, e.g. 1e-3 -> 'val_at_far_1e-3'."""
  return "val" + _far_key(far)[len("tar"):]


def insightface_report(embeddings, pairs, is_same, num_folds: int = 10,
                       far: float = 1e-3) -> dict:
  """insightface_verification of the pairs' squared unit distances. Keys (prefixed so they
  never collide with verification_report's): insightface_verification_accuracy,
  insightface_verification_std, insightface_val_at_far_<far>, insightface_val_std,
  insightface_far (the FAR reached), insightface_threshold (mean t_k)."""
  result = insightface_verification(squared_distances(embeddings, pairs), is_same,
                                    num_folds=num_folds, far=far)
  return {"insightface_verification_accuracy": result["accuracy"],
          "insightface_verification_std": result["std"],
          "insightface_" + _val_key(far): result["val"],
          "insightface_val_std": result["val_std"],
          "insightface_far": result["far"],
          "insightface_threshold": float(np.mean(result["thresholds"]))}


def protocol_report(embeddings, pairs, is_same, num_folds: int = 10, far: float = 1e-3,
                    protocol: str = "exact") -> dict:
  """verification_report (exact), insightface_report, or both merged (protocol = 'both')."""
  if protocol not in PROTOCOLS:
    raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
  report = {}
  if protocol in ("exact", "both"):
    report.update(verification_report(embeddings, pairs, is_same, num_folds, far))
  if protocol in ("insightface", "both"):
    report.update(insightface_report(embeddings, pairs, is_same, num_folds, far))
  report["num_pairs"] = int(len(pairs))
  return report
