"""Synthetic "videos": sets of frames of synthetic identities, each frame degraded by a known level d.

Frames come from the synthetic renderer (data/synthetic.py), so they already
vary in pose, expression, lighting and background; frames of one video are
independent renderings (no temporal coherence). On top, each frame gets a
degradation level d in [0, 1] (0 = as rendered) applied by `degrade`: the
ground truth that a quality network's scores should rank (a Spearman check),
and what quality-aware aggregation (QAN, QAN++) should learn to down-weight.
The degradation model is our own (inferred); no paper defines one.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from enas_face.data.synthetic import _check_count, _check_image_size, identity_seeds, render_identity

# Bad frames draw d from [BAD_LEVEL, 1], the others from [0, GOOD_LEVEL).
BAD_LEVEL, GOOD_LEVEL = 0.7, 0.3
MAX_BLUR_SIGMA = 2.0  # pixels at 32x32, scaled with the image size
MAX_NOISE_STD = 20.0  # of 255
MAX_OCCLUSION = 0.5  # side of the grey block, fraction of the image side
MAX_CONTRAST_LOSS = 0.75  # contrast factor 1 - MAX_CONTRAST_LOSS * d * a
MAX_DARKENING = 0.5  # illumination factor 1 - MAX_DARKENING * d * a


@dataclasses.dataclass(frozen=True)
class SyntheticVideos:
  """Frames of all videos, flat: frames uint8 [N, S, S, 3]; video_ids int64 [N] (frame -> video, 0..V-1);
  video_labels int64 [V] (video -> identity, 0..I-1); degradation float64 [N] (level d of each frame);
  identity_seeds int64 [I] (the renderer's seed of each identity)."""
  frames: np.ndarray
  video_ids: np.ndarray
  video_labels: np.ndarray
  degradation: np.ndarray
  identity_seeds: np.ndarray

  def __len__(self) -> int:
    return int(self.frames.shape[0])


def degrade(image: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
  """One frame degraded at level d = `level` in [0, 1]; uint8 [S, S, 3]; d = 0 returns the image unchanged.

  Each of the four nuisances gets its own random share a_k ~ U(0.5, 1) of the
  level (the seeded mix), applied in this order (our choice):
  occlusion, a grey block (value ~ U(96, 160)) of side MAX_OCCLUSION * d * a_o * S
  at a random place; Gaussian blur (cv2.GaussianBlur), sigma = MAX_BLUR_SIGMA *
  d * a_b * S / 32 (skipped below 0.3 px); contrast and illumination,
  p <- (m + (p - m)(1 - MAX_CONTRAST_LOSS d a_c)) (1 - MAX_DARKENING d a_i), m the
  image mean; sensor noise, Gaussian with std MAX_NOISE_STD * d * a_n.
  Every effect grows with d: the frame's RMS contrast falls and its distance
  to the clean frame rises with d, on average.
  """
  level = float(level)
  if not 0.0 <= level <= 1.0:
    raise ValueError(f"level must be in [0, 1], got {level}")
  shares = rng.uniform(0.5, 1.0, 4)
  if level == 0.0:
    return image.copy()
  size = image.shape[0]
  pixels = image.astype(np.float32)
  side = int(round(MAX_OCCLUSION * level * shares[0] * size))
  corner = rng.integers(0, size - side + 1, 2) if side > 0 else (0, 0)
  grey = rng.uniform(96.0, 160.0)
  if side > 0:
    pixels[corner[0]:corner[0] + side, corner[1]:corner[1] + side] = grey
  sigma = MAX_BLUR_SIGMA * level * shares[1] * size / 32
  if sigma >= 0.3:
    pixels = cv2.GaussianBlur(pixels, (0, 0), sigma)
  mean = pixels.mean()
  pixels = (mean + (pixels - mean) * (1.0 - MAX_CONTRAST_LOSS * level * shares[2])) * (
      1.0 - MAX_DARKENING * level * shares[3])
  noise_std = MAX_NOISE_STD * level * rng.uniform(0.5, 1.0)
  pixels += rng.standard_normal(pixels.shape, dtype=np.float32) * np.float32(noise_std)
  return np.clip(pixels + 0.5, 0, 255).astype(np.uint8)


def video_identity_seeds(num_identities: int, seed: int, train_identities: int = 100,
                         train_heldout_identities: int = 50,
                         train_seed: int | None = None) -> np.ndarray:
  """Identity seeds for the videos, disjoint from every identity of the synthetic training dataset.

  identity_seeds(train_identities, train_heldout_identities, seed) gives the
  training and held-out identities of make_synthetic_dataset(num_identities=
  train_identities, num_heldout_identities=train_heldout_identities, seed=seed)
  (defaults: the dataset's). Its split depends on the total count, so drawing
  more held-out seeds from it would change the training ones; instead the
  video seeds are drawn from their own stream, default_rng([seed, 0x71DE0]),
  and any seed the dataset uses (or a repeat) is rejected: disjoint by
  construction, not by chance. train_seed: the training dataset's seed when it is not
  `seed` (default: seed).
  """
  num_identities = _check_count("num_identities", num_identities, 1)
  taken = set(np.concatenate(identity_seeds(train_identities, train_heldout_identities,
                                            seed if train_seed is None else train_seed)).tolist())
  rng = np.random.default_rng([int(seed), 0x71DE0])
  chosen: list[int] = []
  while len(chosen) < num_identities:
    for value in rng.integers(0, 2 ** 62, size=num_identities - len(chosen)).tolist():
      if value not in taken:
        taken.add(value)
        chosen.append(value)
  return np.array(chosen, dtype=np.int64)


def make_synthetic_videos(num_identities: int = 20, videos_per_identity: int = 2, frames_per_video: int = 8,
                          image_size: int = 32, seed: int = 0, degraded_fraction: float = 0.3,
                          train_identities: int = 100, train_heldout_identities: int = 50,
                          train_seed: int | None = None) -> SyntheticVideos:
  """Videos of identities unseen in training, every frame with a known degradation level.

  Identity i (seed from video_identity_seeds) renders videos_per_identity *
  frames_per_video images with render_identity(identity_seed, ..., image_size,
  seed); consecutive runs of frames_per_video are its videos. In every video,
  round(degraded_fraction * frames_per_video) frames at random positions are
  badly degraded, d ~ U(BAD_LEVEL, 1); the rest get d ~ U(0, GOOD_LEVEL).
  Frames are ordered identity by identity, video by video. Deterministic in
  seed (degradations draw from default_rng([seed, 0xDE6]) in that order).
  """
  num_identities = _check_count("num_identities", num_identities, 1)
  videos_per_identity = _check_count("videos_per_identity", videos_per_identity, 1)
  frames_per_video = _check_count("frames_per_video", frames_per_video, 1)
  _check_image_size(image_size)
  seed = _check_count("seed", seed, 0)
  degraded_fraction = float(degraded_fraction)
  if not 0.0 <= degraded_fraction <= 1.0:
    raise ValueError(f"degraded_fraction must be in [0, 1], got {degraded_fraction}")
  seeds = video_identity_seeds(num_identities, seed, train_identities, train_heldout_identities,
                               train_seed)
  num_videos = num_identities * videos_per_identity
  rng = np.random.default_rng([seed, 0xDE6])
  num_bad = int(round(degraded_fraction * frames_per_video))
  levels = np.empty((num_videos, frames_per_video))
  for video in range(num_videos):
    bad = np.zeros(frames_per_video, dtype=bool)
    bad[rng.choice(frames_per_video, size=num_bad, replace=False)] = True
    levels[video] = np.where(bad, rng.uniform(BAD_LEVEL, 1.0, frames_per_video),
                             rng.uniform(0.0, GOOD_LEVEL, frames_per_video))
  levels = levels.reshape(-1)
  frames = np.concatenate([render_identity(int(identity_seed), videos_per_identity * frames_per_video,
                                           image_size, seed) for identity_seed in seeds])
  for index in range(frames.shape[0]):
    frames[index] = degrade(frames[index], levels[index], rng)
  return SyntheticVideos(
      frames=frames,
      video_ids=np.repeat(np.arange(num_videos, dtype=np.int64), frames_per_video),
      video_labels=np.repeat(np.arange(num_identities, dtype=np.int64), videos_per_identity),
      degradation=levels,
      identity_seeds=seeds)
