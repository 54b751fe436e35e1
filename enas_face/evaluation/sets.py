"""Set-based face recognition in numpy: set embeddings from frame embeddings, set pairs, set verification.

A *set* is several images of one person (the frames of a video, or several
photos). Its embedding pools the frames' embeddings f_i, weighted by a quality
score per frame when one is given (QAN, QAN++: METHODS.md §2). Notation:
u_i = f_i / ||f_i|| (unit frame embeddings), normalize(x) = x / ||x||, w_i the
frame weights with sum_i w_i = 1; every method returns normalize(sum_i w_i u_i).

No TensorFlow here: the quality networks that produce the scores (QAN's branch,
QAN++'s CNN) are in models/quality.py, which also holds the same pooling in
TensorFlow for training and export; this module pools their scores for evaluation.
"""
from __future__ import annotations

import numpy as np

from enas_face.evaluation.verification import l2_normalize, verification_report

METHODS = ("mean", "best", "qan", "qanpp")


# ----------------------------------------------------------------- validation
def _check_method(method) -> str:
  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")
  return method


def _as_frame_embeddings(embeddings, name: str = "embeddings") -> np.ndarray:
  """`embeddings` as finite float64 [S, D] with S >= 1 frames."""
  array = np.asarray(embeddings)
  if array.ndim != 2:
    raise ValueError(f"{name} must be a 2-D array [frames, dim], got shape {array.shape}")
  if array.shape[0] == 0:
    raise ValueError(f"{name} must hold at least one frame: a set cannot be empty, got shape {array.shape}")
  if array.shape[1] == 0:
    raise ValueError(f"{name} must have a positive dimension, got shape {array.shape}")
  array = array.astype(np.float64)
  if not np.all(np.isfinite(array)):
    bad = int(np.count_nonzero(~np.all(np.isfinite(array), axis=1)))
    raise ValueError(f"{name} must be finite, got NaN/inf in {bad} of {array.shape[0]} frames")
  return array


def _as_frame_scores(scores, num_frames: int, method: str, name: str = "scores") -> np.ndarray | None:
  """`scores` as finite float64 [num_frames]; None only for method 'mean' (which ignores scores)."""
  if scores is None:
    if method == "mean":
      return None
    raise ValueError(f"method {method!r} needs one quality score per frame, got scores=None")
  array = np.asarray(scores, dtype=np.float64)
  if array.shape != (num_frames,):
    raise ValueError(f"{name} must have shape ({num_frames},) (one per frame), got {array.shape}")
  if not np.all(np.isfinite(array)):
    raise ValueError(f"{name} must be finite, got {int(np.count_nonzero(~np.isfinite(array)))} NaN/inf "
                     f"of {num_frames}")
  if method == "qan" and array.size and (array.min() < 0.0 or array.max() > 1.0):
    raise ValueError(f"method 'qan' takes sigmoid scores in [0, 1], got scores in "
                     f"[{array.min()}, {array.max()}]")
  return array


# ---------------------------------------------------------------- one set
def frame_weights(scores, method: str, num_frames: int | None = None) -> np.ndarray:
  """Pooling weights w_i (sum_i w_i = 1) of one set's frames; float64 [S].

  - mean:  w_i = 1/S (scores ignored; pass num_frames when scores is None).
  - best:  w_i = 1 for the first frame with the highest score, 0 elsewhere.
  - qan:   w_i = mu_i / sum_j mu_j, mu_i = the scores, sigmoid outputs in [0, 1]
           (Liu et al. 2017). If every mu_i = 0 (sigmoid underflow), w_i = 1/S:
           the limit of equal scores (our choice).
  - qanpp: q'_i = (q_i - min q) / (max q - min q) for S > 2, else q'_i = q_i
           (raw scores; authors' inference code); w_i = q'_i / sum_j q'_j, so for
           S > 2 the worst frame gets weight 0. Guards (our choices): S > 2 with
           max q = min q gives w_i = 1/S (all frames equally good: the mean);
           sum_j q'_j <= 0 (S <= 2 with non-positive raw scores) gives w_i = 1/S
           too. For S <= 2 with scores of mixed sign and a positive sum the
           formula is kept as published (a weight can be negative).
  """
  method = _check_method(method)
  if scores is None:
    if method != "mean" or num_frames is None:
      raise ValueError(f"method {method!r} needs scores (or method 'mean' with num_frames), got scores=None")
    num_frames = int(num_frames)
    if num_frames < 1:
      raise ValueError(f"num_frames must be >= 1: a set cannot be empty, got {num_frames}")
    return np.full(num_frames, 1.0 / num_frames)
  scores = np.asarray(scores, dtype=np.float64)
  if scores.ndim != 1 or scores.size == 0:
    raise ValueError(f"scores must be a non-empty 1-D array (one per frame), got shape {scores.shape}")
  scores = _as_frame_scores(scores, scores.size, method)
  size = scores.size
  uniform = np.full(size, 1.0 / size)
  if method == "mean":
    return uniform
  if method == "best":
    weights = np.zeros(size)
    weights[int(np.argmax(scores))] = 1.0  # np.argmax: ties go to the first frame
    return weights
  if method == "qan":
    total = scores.sum()
    return scores / total if total > 0 else uniform
  # qanpp
  if size > 2:
    spread = scores.max() - scores.min()
    if spread == 0:
      return uniform
    scores = (scores - scores.min()) / spread
  total = scores.sum()
  return scores / total if total > 0 else uniform


def aggregate(embeddings, scores=None, method: str = "mean") -> np.ndarray:
  """Set embedding e = normalize(sum_i w_i u_i), u_i = normalize(f_i), w_i = frame_weights(scores, method); float64 [D].

  embeddings: [S, D] frame embeddings f_i; scores: [S] quality scores (None
  allowed for 'mean'). mean: e = normalize(mean_i u_i); best: e = u_argmax;
  qan: e = normalize(sum_i mu_i u_i / sum_i mu_i); qanpp: e = normalize(sum_i
  q'_i u_i / sum_i q'_i) (see frame_weights for q' and the guards).

  Frames are L2-normalised *before* pooling (our choice, marked): QAN and
  QAN++ pool the raw features f_i, where a frame with a large norm counts more
  than its weight says; pooling unit embeddings makes each frame count by its
  weight alone, and the mean method is the identification centroid of
  verification.identification_top1. A set of one frame gives that frame's unit
  embedding for every method. Frames with f_i = 0 contribute 0; if the pooled
  sum is the zero vector the result stays zero (cosine score 0 against all).
  Empty sets and NaN/inf embeddings or scores raise ValueError.
  """
  method = _check_method(method)
  embeddings = _as_frame_embeddings(embeddings)
  scores = _as_frame_scores(scores, embeddings.shape[0], method)
  weights = frame_weights(scores, method, num_frames=embeddings.shape[0])
  return l2_normalize(weights @ l2_normalize(embeddings, axis=1))


# ---------------------------------------------------------------- many sets
def aggregate_sets(embeddings, scores, set_ids, method: str = "mean") -> np.ndarray:
  """aggregate() of every set of a flat frame array; float64 [K, D], row k = the k-th smallest set id.

  embeddings: [N, D] frames of all sets; scores: [N] or None (mean only);
  set_ids: integer [N], the set of each frame. Frames with a negative set id
  (-1 = unused, as from sets_from_labels) are ignored. Rows follow the sorted
  distinct non-negative ids, so with ids 0..K-1 (sets_from_labels,
  make_synthetic_videos) row k is set k and lines up with its set label.
  """
  method = _check_method(method)
  embeddings = np.asarray(embeddings)
  if embeddings.ndim != 2:
    raise ValueError(f"embeddings must be a 2-D array [frames, dim], got shape {embeddings.shape}")
  set_ids = np.asarray(set_ids)
  if set_ids.shape != (embeddings.shape[0],):
    raise ValueError(f"set_ids must have shape ({embeddings.shape[0]},) (one per frame), got {set_ids.shape}")
  if set_ids.size and not np.issubdtype(set_ids.dtype, np.integer):
    raise ValueError(f"set_ids must hold integers, got dtype {set_ids.dtype}")
  used = set_ids >= 0
  if not used.any():
    raise ValueError(f"set_ids must name at least one set (an id >= 0), got {set_ids.size} frames and no set")
  embeddings = _as_frame_embeddings(embeddings[used])
  set_ids = set_ids[used]
  if scores is not None:
    scores = np.asarray(scores)
    if scores.shape != used.shape:
      raise ValueError(f"scores must have shape {used.shape} (one per frame), got {scores.shape}")
    scores = scores[used]
  scores = _as_frame_scores(scores, embeddings.shape[0], method)
  order = np.argsort(set_ids, kind="stable")
  ids, starts = np.unique(set_ids[order], return_index=True)
  result = np.empty((ids.size, embeddings.shape[1]))
  for row, members in enumerate(np.split(order, starts[1:])):
    result[row] = aggregate(embeddings[members], None if scores is None else scores[members], method)
  return result


def sets_from_labels(labels, set_size: int, seed: int = 0,
                     max_sets_per_identity: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Cut each identity's images into sets of `set_size` images: (set_ids int64 [N], set_labels [K]).

  Identities are visited in sorted label order; each one's image indices are
  shuffled (one np.random.default_rng(seed) for the whole call) and cut into
  floor(n / set_size) consecutive sets, at most max_sets_per_identity of them.
  Leftover images, and identities with fewer than set_size images, get set id
  -1. Set ids run 0..K-1 in that order; set_labels[k] is set k's label (the
  dtype of `labels`). Deterministic in seed.
  """
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f"labels must be a 1-D array, got shape {labels.shape}")
  if isinstance(set_size, bool) or not isinstance(set_size, (int, np.integer)) or set_size < 1:
    raise ValueError(f"set_size must be a positive integer, got {set_size!r}")
  if max_sets_per_identity is not None and (
      isinstance(max_sets_per_identity, bool) or not isinstance(max_sets_per_identity, (int, np.integer))
      or max_sets_per_identity < 1):
    raise ValueError(f"max_sets_per_identity must be None or a positive integer, got {max_sets_per_identity!r}")
  rng = np.random.default_rng(seed)
  set_ids = np.full(labels.shape[0], -1, dtype=np.int64)
  set_labels = []
  identities, inverse = np.unique(labels, return_inverse=True)
  for index, identity in enumerate(identities):
    members = rng.permutation(np.flatnonzero(inverse == index))
    count = members.size // set_size
    if max_sets_per_identity is not None:
      count = min(count, int(max_sets_per_identity))
    for chunk in range(count):
      set_ids[members[chunk * set_size:(chunk + 1) * set_size]] = len(set_labels)
      set_labels.append(identity)
  return set_ids, np.asarray(set_labels, dtype=labels.dtype)


def set_verification_report(set_embeddings, pairs, is_same, num_folds: int = 10,
                            fars=(1e-3, 1e-4)) -> dict:
  """Set-to-set verification: cosine scores s_p = <e_a, e_b> / (||e_a|| ||e_b||) of the pairs of set embeddings.

  Keys as verification.verification_report's, one TAR per FAR:
  verification_accuracy and verification_std (num_folds-fold accuracy, mean
  and std), tar_at_far_<far> for each far (e.g. tar_at_far_1e-3,
  tar_at_far_1e-4), roc_auc, num_pairs, and num_sets (rows of set_embeddings).
  """
  report = verification_report(set_embeddings, pairs, is_same, num_folds, far=tuple(fars))
  report["num_sets"] = int(np.asarray(set_embeddings).shape[0])
  return report


def format_set_report(report: dict) -> str:
  """The set-verification table of quality.evaluate's report: one row per pooling method, then
  the Spearman correlation of each quality network's scores with the degradation level."""
  lines = [f"  set-to-set verification: {report['num_sets']} held-out sets of "
           f"{report['num_identities']} identities ({report['num_frames']} frames)",
           "  pooling   accuracy (10-fold)   TAR@1e-3   TAR@1e-4   ROC AUC"]
  for method in report["methods"]:
    r = report["by_method"][method]
    lines.append(f"  {method:<8}  {r['verification_accuracy']:.4f} +- {r['verification_std']:.4f}"
                 f"    {r['tar_at_far_1e-3']:.4f}     {r['tar_at_far_1e-4']:.4f}     "
                 f"{r['roc_auc']:.4f}")
  if "oracle_qanpp" in report:
    r = report["oracle_qanpp"]
    lines.append(f"  oracle    {r['verification_accuracy']:.4f} +- {r['verification_std']:.4f}"
                 "    (QAN++ pooling of q = -degradation: the headroom)")
  for net, rho in report.get("spearman_quality_vs_degradation", {}).items():
    lines.append(f"  Spearman({net} score, degradation) = {rho:+.3f}")
  return "\n".join(lines)
