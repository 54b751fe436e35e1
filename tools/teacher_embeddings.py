"""Runs a teacher once over a run's images into a teacher embeddings file (--distill_from=FILE).

    # dlib's model on the original LFW photos behind an aligned training set and its pairs:
    python tools/teacher_embeddings.py --flagfile=flags/lfw_view1.cfg \\
        --distill_from=../shared/data/models/dlib --teacher_file=runs/teachers/lfw_dlib.jsonl
    # any crop teacher (run folder, SavedModel, .onnx) on the training crops themselves:
    python tools/teacher_embeddings.py --flagfile=flags/demo.cfg \\
        --distill_from=runs/big/saved_model --teacher_file=runs/teachers/demo_big.jsonl
    # then train (and see the teacher's own accuracy on --pairs in metrics.json):
    python -m enas_face.main --flagfile=... --mode=fixed --distill_from=runs/teachers/lfw_dlib.jsonl

The images are the run's: the data flags (--dataset, --pairs, --unlabelled, --image_size,
--data_seed, ...) load the dataset exactly as training does, and --teacher_splits says which
of its images to embed (default the training split and every --pairs set; `unlabelled`: the
--unlabelled images, which a training run with this file as its teacher needs too). Each image is keyed as training
looks it up (enas_face/data/teacher_files.py): its path in its source when the reader keeps
one (an aligned record's image/path, a folder's file, an LFW pairs image), else a hash of
its pixels (synthetic faces, .bin pairs).

- A crop teacher (run folder, SavedModel, .onnx) embeds the image the dataset holds (the
  aligned crop at --image_size, resized to the teacher's input): status "crop".
- dlib's model (a folder with its two .dat files; the dlib extra) makes its own face chip
  from the original photo, SOURCE_ROOT/key: SOURCE_ROOT is --photos_dir, else the dataset's
  source (folder:DIR itself; tfrecord:DIR's manifest "source", the folder
  tools/align_dataset.py read; an lfw: pairs set's images folder, or its manifest's source;
  an --unlabelled folder: itself, a tfrecord: folder's manifest source, small_identities the
  dataset's). An image without a source path (a hash key) is its own photo. dlib's HOG
  detector finds the face ("detected"); where it finds none,
  --teacher_on_no_face=whole_image gives its landmark model the whole photo as the face box
  ("whole_image"), skip records "no_face" and no embedding. An unreadable photo is
  "unreadable" (no embedding).

The file is appended in chunks of --chunk_size images (runlog.append): a rerun with the same
teacher and settings skips the keys done (a killed run loses at most its last chunk; a
torn last line is cut); another teacher or settings is refused. At the end the counts by
status and the teacher's verification accuracy on each --pairs set, read back from the file
through the same evaluator as training's (training/teachers.pair_report), are printed and
written to TEACHER_FILE.summary.json. Bad input ends with one line `error: ...`, exit 2.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from enas_face import cli  # noqa: E402
from enas_face import flags as enas_flags  # noqa: E402  (defines the data and teacher flags)
from enas_face import runlog  # noqa: E402
from enas_face import runtimes  # noqa: E402
from enas_face.config import ConfigError, RunConfig  # noqa: E402
from enas_face.data import keys as image_keys  # noqa: E402
from enas_face.data import sources  # noqa: E402
from enas_face.data import teacher_files  # noqa: E402

SPLITS = ("train", "val", "test", "pairs", "unlabelled")


def define_flags() -> None:
  """The tool's own flags (defined only when run as a script; the data and teacher flags are
  enas_face.flags')."""
  flags.DEFINE_string("teacher_file", None, "The teacher embeddings file (.jsonl) to write or "
                      "resume.")
  flags.DEFINE_list("teacher_splits", ["train", "pairs"], "Which images of the run to embed: "
                    f"any of {', '.join(SPLITS)} (pairs: every --pairs set; unlabelled: "
                    "--unlabelled's images).")
  flags.DEFINE_string("photos_dir", "", "dlib: the folder the images' source paths are "
                      "relative to (default: the dataset's and each pairs set's own source).")
  flags.DEFINE_enum("teacher_on_no_face", "whole_image", runtimes.DLIB_NO_FACE, "dlib: a "
                    "photo in which its detector finds no face: whole_image (the landmark model "
                    "places the face in the whole photo) or skip (no embedding).")
  flags.DEFINE_integer("teacher_upsample", 1, "dlib: times its HOG detector upsamples the "
                       "photo (1 finds faces down to about 40 pixels).", lower_bound=0)
  flags.DEFINE_integer("chunk_size", 64, "Images per appended chunk (the unit of resuming).",
                       lower_bound=1)


FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class Item:
  """One image to embed: its key, the pixels the dataset holds, and its original photo."""
  key: str
  image: np.ndarray
  photo: str | None


def of_folder(folder: str) -> str:
  """The photo root of a folder: an aligned folder's manifest source, else the folder."""
  path = os.path.join(folder, sources.MANIFEST)
  if os.path.isfile(path):
    return runlog.read_json(path, {}).get("source") or folder
  return folder


def photo_roots(config: RunConfig, photos_dir: str) -> tuple[str | None, dict]:
  """(the training data's photo root, {pairs set name: its root}), None where there is none
  (synthetic faces, insightface records, .bin pairs); --photos_dir overrides all."""
  if photos_dir:
    root = os.path.abspath(photos_dir)
    return root, {spec.name: root for spec in sources.parse_pairs_spec(config.data.pairs)}
  spec = sources.parse_dataset_spec(config.data.dataset)
  train_root = of_folder(spec.path) if spec.kind in ("folder", "tfrecord") else None
  pair_roots = {p.name: of_folder(p.images_dir) if p.kind == "lfw" else None
                for p in sources.parse_pairs_spec(config.data.pairs)}
  return train_root, pair_roots


def unlabelled_roots(config: RunConfig, photos_dir: str, train_root: str | None) -> dict:
  """{--unlabelled source value: its photo root}: small_identities the training data's, a
  folder: itself, a tfrecord: folder its manifest's source; --photos_dir overrides all."""
  roots = {}
  for spec in sources.parse_unlabelled_spec(config.data.unlabelled):
    roots[spec.value()] = (os.path.abspath(photos_dir) if photos_dir else
                           train_root if spec.kind == sources.SMALL_IDENTITIES else
                           of_folder(spec.path))
  return roots


def list_items(dataset, splits, train_root, pair_roots, extra_roots=None) -> list[Item]:
  """The images of the chosen splits, pair sets and unlabelled sources (`extra_roots`: their
  photo roots by source), each key once, in order."""
  parts = [(getattr(dataset, name), train_root) for name in ("train", "val", "test")
           if name in splits]
  if "pairs" in splits:
    parts += [(pairs, pair_roots.get(name)) for name, pairs in dataset.pair_sets.items()]
  if "unlabelled" in splits:
    extra = dataset.unlabelled
    if extra is None:
      raise ConfigError("--teacher_splits=unlabelled: no --unlabelled images (give the "
                        "training run's --unlabelled)")
    parts += [(extra.take(extra.origins == index), (extra_roots or {}).get(source))
              for index, source in enumerate(extra.sources)]
  items, seen = [], set()
  for part, root in parts:
    if not isinstance(part.images, np.ndarray):
      raise ConfigError("the training split streams from disk; add --stream=never")
    for key, image, has_path in zip(image_keys.image_keys(part.images, part.paths),
                                    part.images, [part.paths is not None] * len(part.images)):
      if key in seen:
        continue
      seen.add(key)
      photo = os.path.join(root, key) if (has_path and root) else None
      items.append(Item(key, image, photo))
  return items


class CropTeacher:
  """A run folder, SavedModel or .onnx teacher on the dataset's own images."""

  def __init__(self, config: RunConfig):
    from enas_face.training import teachers  # TensorFlow
    self.teacher = teachers.load_teacher(config.distill.teacher, "--distill_from",
                                         config.distill.input_mean, config.distill.input_std)
    self.embedding_dim = self.teacher.embedding_dim
    self.settings = {"image_size": config.data.image_size,
                     **({"input_mean": config.distill.input_mean,
                         "input_std": config.distill.input_std}
                        if self.teacher.kind == "onnx" else {})}

  def __call__(self, items: list[Item]) -> list[dict]:
    import tensorflow as tf
    images = tf.constant(np.stack([item.image for item in items]), tf.float32)
    embeddings = self.teacher(images)[0].numpy()
    return [teacher_files.record(item.key, "crop", e) for item, e in zip(items, embeddings)]


class PhotoTeacher:
  """dlib's model on each image's original photo (the image itself when it has none)."""

  def __init__(self, config: RunConfig, on_no_face: str, upsample: int, photos_dir: str):
    from enas_face.data import images as image_io
    self.image_io, self.max_pixels = image_io, config.data.max_image_pixels
    self.model = runtimes.DlibFaceEmbedder(config.distill.teacher, upsample, on_no_face)
    self.embedding_dim = self.model.embedding_dim
    self.settings = {"on_no_face": on_no_face, "upsample": upsample, "num_jitters": 0,
                     "photos_dir": photos_dir}

  def __call__(self, items: list[Item]) -> list[dict]:
    out = []
    for item in items:
      image = item.image
      if item.photo is not None:
        try:
          image = self.image_io.read_image(item.photo, max_pixels=self.max_pixels)
        except self.image_io.ImageError as e:
          out.append(teacher_files.record(item.key, "unreadable", reason=e.reason))
          continue
      descriptor, status = self.model.embed(image)
      out.append(teacher_files.record(item.key, status, descriptor,
                                      "" if item.photo is not None else "no source photo: "
                                      "the dataset's image"))
    return out


def make_teacher(config: RunConfig, kind: str, on_no_face: str, upsample: int,
                 photos_dir: str):
  if kind == "embeddings":
    raise ConfigError(f"--distill_from={config.distill.teacher} is an embeddings file already; "
                      "name the teacher model that makes one")
  if kind == "dlib":
    return PhotoTeacher(config, on_no_face, upsample, photos_dir)
  return CropTeacher(config)


def summary_path(output: str) -> str:
  return os.path.splitext(output)[0] + ".summary.json"


def write_embeddings(config: RunConfig, output: str, splits=("train", "pairs"),
                     photos_dir: str = "", on_no_face: str = "whole_image", upsample: int = 1,
                     chunk_size: int = 64, progress: bool = True) -> dict:
  """Embeds the run's images into `output` (resuming it); returns the summary (also written
  to TEACHER_FILE.summary.json): counts by status of the requested images, the images this call
  embedded, and the teacher's report on every --pairs set (teachers.pair_report)."""
  bad = [s for s in splits if s not in SPLITS]
  if bad or not splits:
    raise ConfigError(f"--teacher_splits={','.join(splits)}: choose from {', '.join(SPLITS)}")
  if not output.lower().endswith(teacher_files.EXTENSION):
    raise ConfigError(f"--teacher_file={output}: a teacher embeddings file ends in "
                      f"{teacher_files.EXTENSION}")
  kind = teacher_files.teacher_kind(config.distill.teacher)
  train_root, pair_roots = photo_roots(config, photos_dir)
  extra_roots = unlabelled_roots(config, photos_dir, train_root)
  teacher = make_teacher(config, kind, on_no_face, upsample, os.path.abspath(photos_dir)
                         if photos_dir else "")
  from enas_face.data import load_dataset  # TensorFlow
  dataset = load_dataset(config.data)
  if "unlabelled" in splits:
    from enas_face.data import unlabelled
    clashes = unlabelled.key_clashes(dataset)
    if clashes:
      raise ConfigError(f"--unlabelled={config.data.unlabelled}: {len(clashes)} unlabelled "
                        "images share their key (path in their source) with another image "
                        f"(first: {clashes[:3]}); one file holds one embedding a key: rename "
                        "them")
  items = list_items(dataset, splits, train_root, pair_roots, extra_roots)
  head = teacher_files.header(config.distill.teacher, kind, teacher.embedding_dim,
                              teacher.settings)
  writer = teacher_files.EmbeddingsWriter(output, head, "--teacher_file")
  todo = [item for item in items if item.key not in writer.done]
  logging.info("%s (%s): %d images, %d done before, %d to embed into %s", config.distill.teacher,
               kind, len(items), len(items) - len(todo), len(todo), output)
  from tqdm import tqdm
  tic = time.perf_counter()
  with tqdm(total=len(todo), unit="img", disable=not progress, dynamic_ncols=True) as bar:
    for start in range(0, len(todo), chunk_size):
      chunk = todo[start:start + chunk_size]
      writer.append(teacher(chunk))
      bar.update(len(chunk))
  seconds = time.perf_counter() - tic
  counts = collections.Counter(writer.done[item.key] for item in items)
  summary = {"output": os.path.abspath(output), "teacher": config.distill.teacher,
             "teacher_kind": kind, "images": len(items), "embedded_now": len(todo),
             "seconds_now": round(seconds, 2), "statuses": dict(sorted(counts.items())),
             "without_embedding": sum(counts[s] for s in teacher_files.WITHOUT_EMBEDDING),
             "splits": list(splits), "dataset": config.data.dataset, "pairs": config.data.pairs}
  if "pairs" in splits and dataset.pair_sets:
    from enas_face.training import teachers
    summary["pairs_report"] = teachers.pair_report(
        teachers.load_teacher(os.path.abspath(output), "--teacher_file"), dataset.pair_sets,
        config.eval)
  runlog.write_json(summary_path(output), summary)
  return summary


def format_summary(summary: dict) -> str:
  from enas_face import main as enas_main
  lines = [f"{summary['images']} images ({summary['embedded_now']} embedded now in "
           f"{summary['seconds_now']:.1f} s) -> {summary['output']}",
           "statuses: " + ", ".join(f"{k} {v}" for k, v in summary["statuses"].items())]
  if summary["without_embedding"]:
    lines.append(f"{summary['without_embedding']} images have no embedding (training: "
                 "--distill_missing=skip trains them without the distillation terms)")
  if "pairs_report" in summary:
    lines += [f"  {name}  {value}" for name, value in
              enas_main.teacher_rows(summary["pairs_report"])]
  return "\n".join(lines)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected positional arguments {argv[1:]}; every option is a --flag")
  try:
    if not FLAGS.teacher_file or not FLAGS.distill_from:
      raise ConfigError("--distill_from (the teacher) and --teacher_file (the .jsonl file) "
                        "are required")
    if FLAGS.photos_dir and not os.path.isdir(FLAGS.photos_dir):
      raise ConfigError(f"--photos_dir={FLAGS.photos_dir}: no such folder")
    config = enas_flags.config_from_flags(FLAGS)
    summary = write_embeddings(config, FLAGS.teacher_file, FLAGS.teacher_splits,
                               FLAGS.photos_dir,
                               FLAGS.teacher_on_no_face, FLAGS.teacher_upsample,
                               FLAGS.chunk_size)
  except (ConfigError, runtimes.ModelInputError) as error:
    cli.fail(str(error))
  print(format_summary(summary))
  print(f"summary: {summary_path(FLAGS.teacher_file)}")


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=cli.parse_flags)
