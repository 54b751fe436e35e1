"""Applies data-cleaning settings to a dataset and writes what they removed, with reasons.

    # The cleaning a comprehensive search chose, with the search's proxy embeddings:
    python tools/clean_dataset.py --flagfile=flags/comprehensive_synthetic.cfg \\
        --recipe=runs/comprehensive/final_config.json --output_dir=runs/cleaned
    # Own settings, embeddings from any trained run (its network embeds the images):
    python tools/clean_dataset.py --dataset=tfrecord:data/faces_112 --image_size=64 \\
        --recipe=cleaning.json --proxy_run_dir=runs/my_model --output_dir=runs/cleaned \\
        --write_records

The data come from the usual data flags (--dataset, --image_size, --data_seed, ...: those
of the search). --recipe is a search's final_config.json or arcs_ranked.json (the best
entry), one comprehensive sample ({"cleaning": {...}, ...}) or bare settings
({"outlier_threshold": 0.3, "merge_threshold": 0.9, "duplicate_action": "merge",
"min_images": 3}; enas_face/data/cleaning.py has the rules). The proxy embeddings are
--cleaning_embeddings (a proxy's .npz, or a teacher embeddings .jsonl written by
tools/teacher_embeddings.py: dlib, an ONNX model, any run), else the recipe's, else made with
--proxy_run_dir's network (and saved as OUTPUT_DIR/proxy_embeddings.npz).

Writes OUTPUT_DIR/cleaning_manifest.json: the settings, counts by reason, merged identity
pairs and every removed training image (index in the training split, label, reason, cosine
to its identity centre). With --write_records also the cleaned training data (train, val
and test splits, relabelled) as aligned TFRecords in OUTPUT_DIR/records, usable as
--dataset=tfrecord:OUTPUT_DIR/records. Bad input ends with one line `error: ...`, exit 2.
"""
from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from enas_face.data import cleaning  # noqa: E402
from enas_face import cli  # noqa: E402
from enas_face import flags as enas_flags  # noqa: E402  (defines the data flags)
from enas_face.config import ConfigError  # noqa: E402
from enas_face import runlog  # noqa: E402
from enas_face import spaces  # noqa: E402

flags.DEFINE_string("recipe", None, "Cleaning settings: a search's final_config.json or "
                    "arcs_ranked.json, a comprehensive sample, or the settings alone (JSON).")
flags.DEFINE_string("proxy_run_dir", "", "A trained run whose network makes the proxy "
                    "embeddings when neither --cleaning_embeddings nor the recipe names them.")
flags.DEFINE_string("output_dir", None, "Where the manifest (and records) go.")
flags.DEFINE_bool("write_records", False, "Also write the cleaned data as TFRecords "
                  "(OUTPUT_DIR/records).")
FLAGS = flags.FLAGS


def read_recipe(path: str) -> tuple[cleaning.CleaningSettings, str]:
  """(the settings, the proxy embeddings file the recipe names or "")."""
  try:
    with open(path, encoding="utf-8") as handle:
      obj = json.load(handle)
  except OSError as error:
    raise ConfigError(f"--recipe={path}: {error.strerror}") from None
  except json.JSONDecodeError as error:
    raise ConfigError(f"--recipe={path}: not valid JSON ({error})") from None
  embeddings = obj.get("cleaning_embeddings", "") if isinstance(obj, dict) else ""
  if isinstance(obj, dict) and "architectures" in obj:
    obj = obj["architectures"][0] if obj["architectures"] else {}
  if isinstance(obj, dict) and "sample" in obj:
    obj = obj["sample"]
  if isinstance(obj, dict) and "cleaning" in obj:
    obj = obj["cleaning"]
  try:
    return cleaning.CleaningSettings.from_json(obj), embeddings
  except (TypeError, ValueError) as error:
    raise ConfigError(f"--recipe={path}: no cleaning settings there ({error})") from None


def proxy_from_run(run_dir: str, images: np.ndarray, path: str) -> str:
  """Embeds `images` with the network of `run_dir` and saves them at `path`."""
  from enas_face.search import cleaning_proxy  # pylint: disable=import-outside-toplevel
  from enas_face.training import checkpoints  # pylint: disable=import-outside-toplevel
  config = spaces.load_config(os.path.join(run_dir, runlog.CONFIG))
  if config.model.image_size != images.shape[1]:
    raise ConfigError(f"--proxy_run_dir={run_dir} takes {config.model.image_size}x"
                      f"{config.model.image_size} images; --image_size is {images.shape[1]}")
  cleaning_proxy.save_embeddings(checkpoints.restore_child(config), images, config.eval.batch_size,
                           f"run {os.path.abspath(run_dir)}", path)
  return path


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected positional arguments {argv[1:]}; every option is a --flag")
  try:
    if not FLAGS.recipe or not FLAGS.output_dir:
      raise ConfigError("--recipe and --output_dir are required")
    settings, named = read_recipe(FLAGS.recipe)
    data_config = enas_flags.config_from_flags(FLAGS).data
    from enas_face.data import load_dataset  # pylint: disable=import-outside-toplevel
    dataset = load_dataset(data_config)
    if dataset.streamed:
      raise ConfigError(f"--dataset={data_config.dataset} is streamed; cleaning needs it in "
                        "memory: add --stream=never")
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    path = data_config.cleaning_embeddings or named
    if not path:
      if not FLAGS.proxy_run_dir:
        raise ConfigError("no proxy embeddings: give --cleaning_embeddings, a --recipe that "
                          "names them, or --proxy_run_dir")
      path = proxy_from_run(FLAGS.proxy_run_dir, dataset.train.images,
                            os.path.join(FLAGS.output_dir, cleaning.EMBEDDINGS_NAME))
    embeddings = cleaning.load_embeddings(path).split_embeddings(dataset.train)
  except ConfigError as error:
    cli.fail(str(error))
  result = cleaning.clean(embeddings, dataset.train.labels, dataset.num_classes, settings)
  manifest_path = os.path.join(FLAGS.output_dir, runlog.CLEANING_MANIFEST)
  manifest = cleaning.write_manifest(manifest_path, settings, result, path,
                                     {"dataset": data_config.dataset,
                                      "training_images": int(len(dataset.train.labels))})
  print(f"{manifest['kept_images']} of {len(dataset.train.labels)} training images kept, "
        f"{manifest['classes_after']} of {manifest['classes_before']} identities; removed: "
        f"{manifest['removed_by_rule'] or 'nothing'} ({manifest_path})")
  if FLAGS.write_records:
    from enas_face.data import tfrecord  # pylint: disable=import-outside-toplevel
    cleaned = cleaning.apply(dataset, result)
    parts = (cleaned.train, cleaned.val, cleaned.test)
    images = np.concatenate([p.images for p in parts])
    labels = np.concatenate([p.labels for p in parts])
    names = [f"identity_{k:05d}" for k in range(cleaned.num_classes)]
    paths = [f"{names[label]}/{split}_{i:06d}.png" for split, part in zip(("train", "val", "test"),
                                                                          parts)
             for i, label in enumerate(part.labels)]
    folder = os.path.join(FLAGS.output_dir, "records")
    tfrecord.write_arrays(folder, images, labels, paths, names,
                          source=f"{data_config.dataset} cleaned by {FLAGS.recipe}")
    print(f"cleaned data: --dataset=tfrecord:{folder} ({len(images)} images)")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
