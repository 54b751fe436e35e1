"""Face datasets: every source returns a `base.FaceDataset`.

`load_dataset(config)` reads --dataset (synthetic, folder:, tfrecord:,
insightface:) and --pairs (a list of lfw: and bin: sets, or pairs from held-out
identities): the first set is `dataset.pairs`, all of them `dataset.pair_sets`; and
--unlabelled's images (data/unlabelled.py): `dataset.unlabelled`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os

import numpy as np

from enas_face.config import ConfigError, DataConfig
from enas_face.data.base import FaceDataset, LabelledImages, VerificationPairs
from enas_face.data import label_noise
from enas_face.data import sources


def load_dataset(config: DataConfig) -> FaceDataset:
  """The dataset named by --dataset, with the verification pairs of --pairs (identities named
  by any lfw: set are the ones excluded from training), --label_noise's flipped labels and
  --unlabelled's images."""
  from enas_face.data import label_noise
  from enas_face.data import unlabelled
  dataset, pair_identities, collection = _load_dataset(config)
  if config.label_noise > 0 and not isinstance(dataset.train, LabelledImages):
    raise ConfigError(f"--label_noise={config.label_noise} needs the training images in memory; "
                      "this dataset streams from disk: add --stream=never")
  dataset = label_noise.with_label_noise(dataset, config.label_noise, config.seed)
  return unlabelled.attach(dataset, config, pair_identities, collection, decode_files)


def _load_dataset(config: DataConfig):
  """(dataset, the identities the --pairs sets name, the in-memory collection it was assembled
  from or None: synthetic or streamed)."""
  if config.dataset == "synthetic":
    from enas_face.data import synthetic
    return synthetic.make_synthetic_dataset(
        num_identities=config.synthetic_identities,
        images_per_identity=config.synthetic_images_per_identity,
        num_heldout_identities=config.synthetic_heldout_identities,
        heldout_images_per_identity=config.synthetic_heldout_images_per_identity,
        num_pairs=config.num_pairs, num_folds=config.num_folds,
        image_size=config.image_size, seed=config.seed,
        label_noise=config.synthetic_label_noise, outliers=config.synthetic_outliers,
        near_duplicates=config.synthetic_near_duplicates), frozenset(), None
  from enas_face.data import real
  spec = sources.parse_dataset_spec(config.dataset)
  with _errors_name_the_flag(f"--dataset={config.dataset}"):
    source = _stream_source(spec, config)
    collection = None if source is not None else _read_collection(spec, config)
  pair_sets, pair_identities = {}, frozenset()
  for pairs_spec in sources.parse_pairs_spec(config.pairs):
    with _errors_name_the_flag(f"--pairs={config.pairs}"):
      pair_sets[pairs_spec.name], identities = _read_pairs(pairs_spec, config)
    pair_identities |= identities
  primary = next(iter(pair_sets.values()), None)
  if source is not None:
    from enas_face.data import stream
    with _errors_name_the_flag(f"--dataset={config.dataset}"):
      dataset = stream.load_streamed(source, config, config.dataset, primary, pair_identities)
  else:
    dataset = real.assemble(collection, config, config.dataset, primary, pair_identities)
  dataset = dataclasses.replace(dataset, pair_sets=pair_sets) if pair_sets else dataset
  return dataset, pair_identities, collection


def _stream_source(spec: sources.DatasetSpec, config: DataConfig):
  """The record source to stream from (--stream, data/stream.py), or None for in memory."""
  from enas_face.data import stream
  if config.stream == "never" or config.align == "online":
    return None  # --align=online on aligned records is refused by the in-memory reader
  if spec.kind not in sources.STREAMABLE:
    stream.should_stream(config, spec.kind, 0)  # --stream=always: an error naming the flag
    return None
  source = stream.make_source(spec.kind, spec.path, spec.index_path)
  return source if stream.should_stream(config, spec.kind, source.num_records) else None


@contextlib.contextmanager
def _errors_name_the_flag(flag: str):
  """Reader errors (bad manifest, RecordIO index, pairs file, pickle) -> ConfigError
  naming the flag; their messages already name the file."""
  from enas_face.data import recordio, tfrecord, verification_files
  try:
    yield
  except ConfigError:
    raise
  except (tfrecord.ManifestError, recordio.RecordIOError, verification_files.PairsFileError,
          verification_files.UnsafePickleError) as e:
    raise ConfigError(f"{flag}: {e}") from e


def decode_files(root: str, relpaths: list[str], config: DataConfig):
  """(image at config.image_size or None, status, reason) per file: aligned online (status
  aligned / fallback / rejected, see online.align_files) or centre-cropped ("resized")."""
  from enas_face.data import folder, real
  if config.align == "online":
    from enas_face.data import online
    return online.align_files(root, relpaths, config)
  return [(image, "resized" if image is not None else "rejected", reason)
          for image, reason in folder.read_files(
              root, relpaths, lambda image: real.fit_square(image, config.image_size),
              config.max_image_pixels)]


def _with_alignment_counts(report: dict, results, relpaths: list[str],
                           config: DataConfig) -> dict:
  """--align=online: report plus num_aligned, num_fallback and the fallbacks (path, why no
  face, "aligned": false: kept as centred square resizes)."""
  if config.align != "online":
    return report
  fallbacks = [{"path": relpath, "reason": reason, "aligned": False}
               for relpath, (_, status, reason) in zip(relpaths, results) if status == "fallback"]
  return dict(report, num_aligned=sum(status == "aligned" for _, status, _ in results),
              num_fallback=len(fallbacks), fallbacks=fallbacks)


def _read_collection(spec: sources.DatasetSpec, config: DataConfig):
  from enas_face.data import real
  if spec.kind == "folder":
    from enas_face.data import folder
    listing = folder.scan_folder(spec.path)
    relpaths = [relpath for _, relpath in listing.files]
    results = decode_files(spec.path, relpaths, config)
    kept = [i for i, (image, _, _) in enumerate(results) if image is not None]
    rejects = [{"path": relpaths[i], "reason": reason}
               for i, (image, _, reason) in enumerate(results) if image is None]
    if not kept:
      raise ConfigError(f"--dataset={config.dataset}: none of its {len(relpaths)} images could "
                        f"be used; first rejects: {rejects[:3]}")
    return real.LabelledCollection(
        images=np.stack([results[i][0] for i in kept]),
        labels=np.array([listing.files[i][0] for i in kept], dtype=np.int64),
        identity_names=listing.identities, paths=[relpaths[i] for i in kept],
        report=_with_alignment_counts(folder.listing_report(listing, rejects), results, relpaths,
                                      config))
  if spec.kind == "tfrecord":
    from enas_face.data import tfrecord
    if config.align == "online":
      raise ConfigError("--align=online with --dataset=tfrecord: the shards hold aligned faces "
                        "already; use --align=none")
    manifest = tfrecord.read_manifest(spec.path)
    images, labels, paths = tfrecord.load_arrays(spec.path, config.image_size)
    names = [""] * (max(i["label"] for i in manifest["identities"]) + 1)
    for identity in manifest["identities"]:
      names[identity["label"]] = identity["name"]
    report = {"source": spec.path, "manifest": os.path.join(spec.path, sources.MANIFEST),
              "image_files": manifest["num_images"] + manifest["num_rejects"],
              "rejects": manifest["rejects"], "num_rejects": manifest["num_rejects"],
              "empty_identities": manifest.get("empty_identities", [])}
    return real.LabelledCollection(images, labels.astype(np.int64), names, list(paths), report)
  return _read_insightface(spec, config)


def _read_insightface(spec: sources.DatasetSpec, config: DataConfig):
  from enas_face.data import images as image_io
  from enas_face.data import real, recordio
  if config.align == "online":
    raise ConfigError("--align=online with --dataset=insightface: train.rec holds aligned "
                      "112x112 faces already; use --align=none")
  images, labels, paths, rejects = [], [], [], []
  for key, label, data in recordio.iter_insightface(spec.path, spec.index_path):
    name = f"{os.path.basename(spec.path)}#{key}"
    try:
      image = image_io.decode_image(data, name, max_pixels=config.max_image_pixels)
    except image_io.ImageError as e:
      rejects.append({"path": name, "reason": e.reason})
      continue
    images.append(real.fit_square(image, config.image_size))
    labels.append(label)
    paths.append(name)
  if not images:
    raise ConfigError(f"--dataset={config.dataset}: no decodable image records")
  labels = np.array(labels, dtype=np.int64)
  names = [str(i) for i in range(int(labels.max()) + 1)]
  report = {"source": spec.path, "image_files": len(images) + len(rejects), "rejects": rejects,
            "num_rejects": len(rejects)}
  return real.LabelledCollection(np.stack(images), labels, names, paths, report)


def _read_pairs(spec: sources.PairsSpec, config: DataConfig
                ) -> tuple[VerificationPairs, frozenset[str]]:
  """The --pairs images at config.image_size and the identities they name."""
  from enas_face.data import images as image_io
  from enas_face.data import real, verification_files
  if spec.kind == "bin":
    encoded, is_same = verification_files.load_bin(spec.path)
    decoded = []
    for i, data in enumerate(encoded):
      try:
        image = image_io.decode_image(data, f"{spec.path}[{i}]", config.max_image_pixels)
      except image_io.ImageError as e:
        raise ConfigError(f"--pairs={config.pairs}: {e}") from e
      decoded.append(real.fit_square(image, config.image_size))
    pairs = np.arange(2 * len(is_same), dtype=np.int64).reshape(-1, 2)
    return real.ordered_pairs(np.stack(decoded), pairs, is_same, config.num_folds), frozenset()

  entries = verification_files.parse_lfw_pairs(spec.path)
  identities = frozenset(verification_files.identities_in_pairs(entries))
  if os.path.isfile(os.path.join(spec.images_dir, sources.MANIFEST)):
    from enas_face.data import tfrecord
    relpaths, pairs, is_same = verification_files.resolve_lfw_pairs(spec.path, lambda _: True)
    images = tfrecord.lookup_images(spec.images_dir, relpaths, config.image_size)
  else:
    relpaths, pairs, is_same = verification_files.resolve_lfw_pairs(
        spec.path, lambda rel: os.path.isfile(os.path.join(spec.images_dir, rel)))
    results = decode_files(spec.images_dir, relpaths, config)
    failed = [f"{relpaths[i]} ({reason})" for i, (image, _, reason) in enumerate(results)
              if image is None]
    if failed:
      raise ConfigError(f"--pairs={config.pairs}: {len(failed)} pair images could not be used: "
                        + "; ".join(failed[:20]) + (" ..." if len(failed) > 20 else ""))
    images = np.stack([image for image, _, _ in results])
  return real.ordered_pairs(images, pairs, is_same, config.num_folds, relpaths), identities
