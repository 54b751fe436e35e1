"""Sets of face images for set-to-set recognition: the frames of a video, or several photos of one person.

`--sets` names where they come from:

- `synthetic`: seeded synthetic "videos" (data/synthetic_video.py) of identities
  the synthetic training set never holds, each frame with a known degradation d.
- `folder:DIR`: DIR/<person>/<video>/<frame> (each video folder is a set) or
  DIR/<person>/<image> (the person's images cut into sets of --set_size; a
  person folder may mix both). Frames are decoded (and aligned with
  --align=online) by the training reader; a frame that cannot be read or in
  which no face is found is excluded and counted (report: excluded_frames,
  exclusions with path and reason); a set left without frames is dropped and
  counted.
- `tfrecord:DIR`: an aligned folder (tools/align_dataset.py); each identity's
  images cut into sets of --set_size.

Sets are split by identity into the quality networks' training identities and
held-out identities, on which set pairs are drawn: the identities of
--set_heldout (an LFW pairs file: e.g. pairsDevTest's people, which an LFW View 1
embedder never trains on), else a seeded --set_heldout_fraction of them.
`--set_degraded_fraction` degrades that fraction of each real set's frames
(synthetic_video.degrade, seeded, levels kept) so real photos can be tested
as poor video would be; synthetic videos always carry it.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from enas_face.config import ConfigError, SetConfig
from enas_face.data.pairs import make_verification_pairs
from enas_face.data import synthetic_video
from enas_face.evaluation import sets as set_ops

SET_KINDS = ("synthetic", "folder", "tfrecord")


@dataclasses.dataclass(frozen=True)
class FrameSets:
  """frames uint8 [N, S, S, 3]; set_ids int64 [N] (frame -> set, 0..K-1); set_labels int64 [K]
  (set -> identity label); identity_names[label]; degradation float64 [N] (the known level d
  of each frame) or None; report: what was read, excluded and dropped."""
  frames: np.ndarray
  set_ids: np.ndarray
  set_labels: np.ndarray
  identity_names: list[str]
  degradation: np.ndarray | None
  report: dict = dataclasses.field(default_factory=dict)

  @property
  def num_sets(self) -> int:
    return int(self.set_labels.shape[0])

  @property
  def num_identities(self) -> int:
    return int(np.unique(self.set_labels).size)

  def subset(self, identity_mask: np.ndarray) -> "FrameSets":
    """The sets whose identity label l has identity_mask[l]; set ids renumbered 0..K'-1 in order."""
    keep_sets = identity_mask[self.set_labels]
    new_id = np.full(self.num_sets, -1, np.int64)
    new_id[keep_sets] = np.arange(int(keep_sets.sum()))
    frame_keep = keep_sets[self.set_ids]
    return FrameSets(self.frames[frame_keep], new_id[self.set_ids[frame_keep]],
                     self.set_labels[keep_sets], self.identity_names,
                     None if self.degradation is None else self.degradation[frame_keep], self.report)

  def sizes(self) -> np.ndarray:
    """Frames per set, int64 [K]."""
    return np.bincount(self.set_ids, minlength=self.num_sets)


def parse_sets_spec(value: str) -> tuple[str, str]:
  """`synthetic`, `folder:DIR` or `tfrecord:DIR` -> (kind, path); errors name --sets."""
  kind, _, path = value.partition(":")
  if kind not in SET_KINDS:
    raise ConfigError(f"--sets={value}: expected one of synthetic, folder:DIR, tfrecord:DIR")
  if kind == "synthetic":
    if path:
      raise ConfigError(f"--sets={value}: synthetic takes no path")
    return kind, ""
  if not path or not os.path.isdir(path):
    raise ConfigError(f"--sets={value}: {path or '(empty)'} is not a folder")
  return kind, path


def _synthetic(config: SetConfig, data_config, seed: int) -> FrameSets:
  """Videos of identities that neither the training nor the held-out identities of the run's
  synthetic data (data_config's counts and seed) hold."""
  videos = synthetic_video.make_synthetic_videos(
      num_identities=config.synthetic_identities, videos_per_identity=config.videos_per_identity,
      frames_per_video=config.set_size, image_size=data_config.image_size, seed=seed,
      degraded_fraction=config.degraded_fraction,
      train_identities=data_config.synthetic_identities,
      train_heldout_identities=data_config.synthetic_heldout_identities,
      train_seed=data_config.seed)
  names = [f"video_identity_{int(s)}" for s in videos.identity_seeds]
  return FrameSets(videos.frames, videos.video_ids, videos.video_labels, names, videos.degradation,
                   {"source": "synthetic", "frames": len(videos)})


def list_folder_sets(root: str) -> tuple[list[str], list[tuple[int, str, str]]]:
  """(person names, [(person label, set key, frame relpath)]): a subfolder of a person is one set
  (key = its name); the person's loose images are one group (key "") cut later into sets."""
  from enas_face.data import images as image_io
  people = sorted(d for d in os.listdir(root)
                  if not d.startswith(".") and os.path.isdir(os.path.join(root, d)))
  if not people:
    raise ConfigError(f"--sets=folder:{root}: no person subfolders (expected "
                      "DIR/<person>/<video>/<frame> or DIR/<person>/<image>)")

  def images_in(relfolder):
    folder = os.path.join(root, relfolder)
    return [f"{relfolder}/{n}" for n in sorted(os.listdir(folder))
            if not n.startswith(".") and os.path.isfile(os.path.join(folder, n))
            and os.path.splitext(n)[1].lower() in image_io.IMAGE_EXTENSIONS]

  entries = []
  for label, person in enumerate(people):
    entries += [(label, "", relpath) for relpath in images_in(person)]
    for video in sorted(d for d in os.listdir(os.path.join(root, person))
                        if not d.startswith(".") and os.path.isdir(os.path.join(root, person, d))):
      entries += [(label, video, relpath) for relpath in images_in(f"{person}/{video}")]
  if not entries:
    raise ConfigError(f"--sets=folder:{root}: its {len(people)} person folders hold no images")
  return people, entries


def _cut_into_sets(frame_groups: list[tuple[int, list[int]]], set_size: int, seed: int):
  """[(label, frame indices, whole)] -> ({frame index: set id}, set labels): a whole group (a
  video folder) is one set as it is; any other group (a person's loose photos) is shuffled and
  cut into floor(n / set_size) sets of set_size frames (leftovers unused)."""
  rng = np.random.default_rng([seed, 0x5E7])
  assignment, labels = {}, []
  for label, indices, whole in frame_groups:
    if whole:
      chunks = [indices] if indices else []
    else:
      order = [indices[i] for i in rng.permutation(len(indices))]
      chunks = [order[k * set_size:(k + 1) * set_size] for k in range(len(order) // set_size)]
    for chunk in chunks:
      for index in chunk:
        assignment[index] = len(labels)
      labels.append(label)
  return assignment, np.asarray(labels, np.int64)


def _folder(path: str, config: SetConfig, data_config, seed: int) -> FrameSets:
  from enas_face.data import decode_files
  people, entries = list_folder_sets(path)
  relpaths = [relpath for _, _, relpath in entries]
  results = decode_files(path, relpaths, data_config)
  exclusions = [{"path": relpaths[i], "reason": reason}
                for i, (image, _, reason) in enumerate(results) if image is None]
  groups: dict[tuple[int, str], list[int]] = {}
  for i, (label, key, _) in enumerate(entries):
    groups.setdefault((label, key), [])
    if results[i][0] is not None:
      groups[(label, key)].append(i)
  videos_without_frames = [f"{people[label]}/{key}" for (label, key), kept in groups.items()
                           if key and not kept]
  assignment, set_labels = _cut_into_sets(
      [(label, kept, bool(key)) for (label, key), kept in sorted(groups.items())],
      config.set_size, seed)
  if not set_labels.size:
    raise ConfigError(f"--sets=folder:{path}: no set could be formed ({len(exclusions)} of "
                      f"{len(relpaths)} frames excluded; loose images are cut into sets of "
                      f"--set_size={config.set_size}); first exclusions: {exclusions[:3]}")
  used = sorted(assignment)
  report = {"source": path, "frames": len(relpaths), "excluded_frames": len(exclusions),
            "exclusions": exclusions, "dropped_sets": len(videos_without_frames),
            "sets_without_frames": videos_without_frames, "unused_frames": len(relpaths)
            - len(exclusions) - len(used)}
  return FrameSets(np.stack([results[i][0] for i in used]),
                   np.array([assignment[i] for i in used], np.int64), set_labels, people, None,
                   report)


def _tfrecord(path: str, config: SetConfig, image_size: int, seed: int) -> FrameSets:
  from enas_face.data import tfrecord
  try:
    manifest = tfrecord.read_manifest(path)
    images, labels, _ = tfrecord.load_arrays(path, image_size)
  except tfrecord.ManifestError as e:
    raise ConfigError(f"--sets=tfrecord:{path}: {e}") from e
  names = [""] * (max(i["label"] for i in manifest["identities"]) + 1)
  for identity in manifest["identities"]:
    names[identity["label"]] = identity["name"]
  set_ids, set_labels = set_ops.sets_from_labels(labels.astype(np.int64), config.set_size, seed)
  used = set_ids >= 0
  return FrameSets(images[used], set_ids[used], set_labels, names, None,
                   {"source": path, "frames": int(labels.size), "unused_frames":
                    int((~used).sum())})


def degrade_sets(sets: FrameSets, fraction: float, seed: int) -> FrameSets:
  """Degrades round(fraction * |set|) frames of each set, at random positions, with a level
  d ~ U(BAD_LEVEL, 1) (synthetic_video.degrade); the other frames keep d = 0."""
  rng = np.random.default_rng([seed, 0xDE9])
  frames, levels = sets.frames.copy(), np.zeros(len(sets.frames))
  for set_id in range(sets.num_sets):
    members = np.flatnonzero(sets.set_ids == set_id)
    chosen = rng.choice(members, size=int(round(fraction * members.size)), replace=False)
    for index in chosen:
      levels[index] = rng.uniform(synthetic_video.BAD_LEVEL, 1.0)
      frames[index] = synthetic_video.degrade(frames[index], levels[index], rng)
  return dataclasses.replace(sets, frames=frames, degradation=levels,
                             report={**sets.report, "degraded_fraction": fraction})


def load_sets(config: SetConfig, data_config, seed: int) -> FrameSets:
  """Every set of --sets, at data_config.image_size (degraded as --set_degraded_fraction says)."""
  kind, path = parse_sets_spec(config.sets)
  size = data_config.image_size
  if kind == "synthetic":
    return _synthetic(config, data_config, seed)
  sets = (_folder(path, config, data_config, seed) if kind == "folder"
          else _tfrecord(path, config, size, seed))
  return degrade_sets(sets, config.degraded_fraction, seed) if config.degraded_fraction else sets


def heldout_identities(sets: FrameSets, config: SetConfig, seed: int) -> np.ndarray:
  """bool [num labels]: the held-out identities: the people of the --set_heldout pairs file, else
  a seeded --set_heldout_fraction of the identities that hold sets."""
  mask = np.zeros(len(sets.identity_names), bool)
  if config.heldout:
    from enas_face.data import verification_files
    try:
      names = verification_files.identities_in_pairs(
          verification_files.parse_lfw_pairs(config.heldout))
    except (OSError, verification_files.PairsFileError) as e:
      raise ConfigError(f"--set_heldout={config.heldout}: {e}") from e
    mask[[i for i, name in enumerate(sets.identity_names) if name in names]] = True
    return mask
  present = np.unique(sets.set_labels)
  rng = np.random.default_rng([seed, 0x4E1D])
  count = int(round(config.heldout_fraction * present.size))
  mask[rng.choice(present, size=count, replace=False)] = True
  return mask


def split_sets(sets: FrameSets, config: SetConfig, seed: int) -> tuple[FrameSets, FrameSets]:
  """(training sets, held-out sets), disjoint in identity; errors name the flag when either
  cannot give pairs (a held-out identity needs two sets for a same pair)."""
  heldout = heldout_identities(sets, config, seed)
  train, test = sets.subset(~heldout), sets.subset(heldout)
  for part, what in ((train, "training"), (test, "held-out")):
    labels, counts = np.unique(part.set_labels, return_counts=True)
    if (counts >= 2).sum() < 2:
      raise ConfigError(
          f"--sets={config.sets}: its {what} identities have {int((counts >= 2).sum())} "
          f"identities with 2 or more sets (need 2); check --set_heldout / "
          f"--set_heldout_fraction and --set_size={config.set_size}")
  return train, test


def make_set_pairs(set_labels, num_pairs: int, num_folds: int = 10,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Balanced same/different pairs of sets, ordered by fold (make_verification_pairs on set
  labels).

  Sets are items with labels, so the image-pair sampler applies unchanged:
  (pairs int64 [num_pairs, 2] of set indices, is_same bool [num_pairs]); fold
  k holds num_pairs / num_folds rows, its same pairs first. No set is paired
  with itself and no pair repeats. Deterministic in seed.
  """
  return make_verification_pairs(np.asarray(set_labels), num_pairs, num_folds, seed)


def set_pairs(sets: FrameSets, config: SetConfig, num_folds: int, seed: int):
  """Balanced same/different set pairs of the held-out sets (make_set_pairs)."""
  try:
    return make_set_pairs(sets.set_labels, config.num_pairs, num_folds, seed)
  except ValueError as e:
    raise ConfigError(f"--set_pairs={config.num_pairs}: {e} ({sets.num_sets} held-out sets of "
                      f"{sets.num_identities} identities)") from e
