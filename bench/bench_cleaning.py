"""How well a data cleaning finds the known noise: precision and recall of the removed
training images against the labels that were flipped, for either cleaning proxy.

    # dlib as the proxy: its embeddings of ORL's training images (20 % of the labels flipped)
    ORL="--flagfile=flags/cleaning_orl.cfg --dataset=folder:../shared/data/orl_faces"
    python tools/teacher_embeddings.py $ORL --distill_from=../shared/data/models/dlib \\
        --teacher_splits=train --teacher_file=runs/teachers/orl_dlib.jsonl
    python bench/bench_cleaning.py $ORL --cleaning_embeddings=runs/teachers/orl_dlib.jsonl \\
        --compare_uncentred --bench_output=runs/bench_cleaning/orl_dlib.json
    # a briefly trained network as the proxy (a comprehensive search's .npz, or one made by
    # tools/clean_dataset.py --proxy_run_dir from a run trained on the same noisy data)
    python -m enas_face.main $ORL --mode=fixed --run_dir=runs/orl_proxy
    echo '{"outlier_threshold": 0.3}' > runs/orl_recipe.json
    python tools/clean_dataset.py $ORL --recipe=runs/orl_recipe.json \\
        --proxy_run_dir=runs/orl_proxy --output_dir=runs/orl_cleaned
    python bench/bench_cleaning.py $ORL --bench_output=runs/bench_cleaning/orl_proxy.json \\
        --cleaning_embeddings=runs/orl_cleaned/proxy_embeddings.npz

The data come from the usual data flags (in memory), with the noise the dataset's report
records: `label_noise` (--label_noise, any dataset: the flipped training indices) and
`synthetic_noise` (the synthetic generator's wrong identities and outliers). For every
outlier threshold of --outlier_thresholds the cleaning rules (enas_face/data/cleaning.py; the
other rules as --merge_threshold, --duplicate_action, --min_images set them) run on the
training split, and per truth

    precision = |removed ∩ noisy| / |removed|,   recall = |removed ∩ noisy| / |noisy|

Also the median cosine to the identity centre of the clean and of the noisy images (how
far apart the two are), and with a teacher file and --compare_uncentred the same rules on
its embeddings without centring (normalised only). Writes --bench_output (JSON) and prints a
table. `removal_quality` is what bench_comprehensive.py reports for a run's manifest.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402


def noise_truth(report: dict) -> dict[str, set[int]]:
  """{truth name: the noisy training indices} of a dataset report (data_report.json):
  label_noise (--label_noise's flips) and synthetic_noise (the generator's wrong identities
  and outliers), whichever it holds, and "all" (their union) when it holds both."""
  truth = {}
  if report.get("label_noise"):
    truth["label_noise"] = set(report["label_noise"]["label_noise_indices"])
  if report.get("synthetic_noise"):
    noise = report["synthetic_noise"]
    truth["synthetic_noise"] = set(noise["label_noise_indices"]) | set(noise["outlier_indices"])
  if len(truth) == 2:
    truth["all"] = truth["label_noise"] | truth["synthetic_noise"]
  return truth


def removal_quality(report: dict, removed) -> dict:
  """{truth: {precision, recall, removed, noisy, hits}} of the removed training indices
  against every truth of noise_truth(report); precision None when nothing was removed."""
  removed = set(int(i) for i in removed)
  out = {}
  for name, noisy in noise_truth(report).items():
    hits = len(noisy & removed)
    out[name] = {"precision": hits / len(removed) if removed else None,
                 "recall": hits / len(noisy) if noisy else None,
                 "removed": len(removed), "noisy": len(noisy), "hits": hits}
  return out


def _median(values) -> float | None:
  return float(np.median(values)) if len(values) else None


def sweep(embeddings: np.ndarray, labels: np.ndarray, num_classes: int, report: dict,
          thresholds, base) -> list[dict]:
  """One row per outlier threshold: the cleaning's counts and removal_quality."""
  import dataclasses
  from enas_face.data import cleaning
  e = cleaning.unit(embeddings)
  centres = cleaning.identity_centres(e, labels, num_classes)
  cosine = np.sum(e * centres[labels], axis=1)
  noisy = np.zeros(len(labels), bool)
  for indices in noise_truth(report).values():
    noisy[list(indices)] = True
  rows = []
  for threshold in thresholds:
    settings = dataclasses.replace(base, outlier_threshold=threshold)
    result = cleaning.clean(embeddings, labels, num_classes, settings)
    rows.append({"settings": settings.to_json(), **result.summary(),
                 "quality": removal_quality(report, [r["index"] for r in result.removed]),
                 "median_cosine_clean": _median(cosine[~noisy]),
                 "median_cosine_noisy": _median(cosine[noisy])})
  return rows


def format_rows(name: str, rows: list[dict]) -> str:
  lines = [f"{name}  (median cosine to the centre: clean {rows[0]['median_cosine_clean']:.3f}, "
           f"noisy {rows[0]['median_cosine_noisy'] or float('nan'):.3f})",
           "  outlier threshold | removed | " + " | ".join(
               f"{truth} precision / recall" for truth in rows[0]["quality"])]
  for row in rows:
    quality = " | ".join(
        f"{'n/a' if q['precision'] is None else format(q['precision'], '.2f')} / "
        f"{q['recall']:.2f}" for q in row["quality"].values())
    lines.append(f"  {row['settings']['outlier_threshold']!s:>17} | {row['removed_images']:>7} "
                 f"| {quality}")
  return "\n".join(lines)


def main(argv: list[str]) -> None:
  from absl import flags
  from enas_face import cli
  from enas_face import flags as enas_flags
  from enas_face import runlog
  from enas_face.config import ConfigError
  from enas_face.data import cleaning
  from enas_face.data import load_dataset
  values = flags.FLAGS
  if len(argv) > 1:
    cli.fail(f"unexpected positional arguments {argv[1:]}; every option is a --flag")
  try:
    if not values.cleaning_embeddings or not values.bench_output:
      raise ConfigError("--cleaning_embeddings (a proxy's .npz or a teacher embeddings .jsonl) "
                        "and --bench_output are required")
    data = enas_flags.config_from_flags(values).data
    thresholds = [None if t in ("off", "none") else float(t)
                  for t in values.outlier_thresholds]
    base = cleaning.CleaningSettings(
        merge_threshold=values.merge_threshold if values.merge_threshold >= 0 else None,
        duplicate_action=values.duplicate_action, min_images=values.min_images)
    dataset = load_dataset(data)
    if dataset.streamed:
      raise ConfigError(f"--dataset={data.dataset} streams; cleaning needs it in memory: add "
                        "--stream=never")
    if not noise_truth(dataset.report):
      raise ConfigError("the dataset records no noise to compare with: add --label_noise (or "
                        "--synthetic_label_noise / --synthetic_outliers)")
    proxy = cleaning.load_embeddings(data.cleaning_embeddings)
    embeddings = proxy.split_embeddings(dataset.train)
  except ConfigError as error:
    cli.fail(str(error))
  train = dataset.train
  results = {"dataset": data.dataset, "cleaning_embeddings": data.cleaning_embeddings,
             "proxy": type(proxy).__name__, "training_images": len(train),
             "classes": dataset.num_classes,
             "noisy": {k: len(v) for k, v in noise_truth(dataset.report).items()},
             "centred": sweep(embeddings, train.labels, dataset.num_classes, dataset.report,
                              thresholds, base)}
  print(f"{data.cleaning_embeddings}: {len(train)} training images of {dataset.num_classes} "
        f"identities, noisy: {results['noisy']}")
  print(format_rows("centred (what the cleaning uses)", results["centred"]))
  if values.compare_uncentred and isinstance(proxy, cleaning.TeacherProxy):
    raw, _ = proxy.file.targets(train.images, train.paths, "training images", "error",
                                "--cleaning_embeddings")
    results["uncentred"] = sweep(cleaning.unit(raw), train.labels, dataset.num_classes,
                                 dataset.report, thresholds, base)
    print(format_rows("uncentred (normalised only)", results["uncentred"]))
  runlog.write_json(values.bench_output, results)
  print(f"written: {values.bench_output}")


def define_flags() -> None:
  from absl import flags
  from enas_face import flags as _  # noqa: F401  (defines the data flags)
  flags.DEFINE_string("bench_output", None, "Where the results go (JSON).")
  flags.DEFINE_list("outlier_thresholds", ["0.0", "0.1", "0.2", "0.3", "0.4", "0.5"],
                    "Outlier thresholds to sweep (off: no outlier rule).")
  flags.DEFINE_float("merge_threshold", -1.0, "The near-duplicate rule's threshold (< 0: off).")
  flags.DEFINE_enum("duplicate_action", "merge", ["merge", "drop"], "Near-duplicate pairs.")
  flags.DEFINE_integer("min_images", 1, "Minimum images per identity left (1: off).",
                       lower_bound=1)
  flags.DEFINE_bool("compare_uncentred", False, "A teacher file: also the same rules on its "
                    "embeddings without centring.")


if __name__ == "__main__":
  from absl import app
  from enas_face import cli
  define_flags()
  app.run(main, flags_parser=cli.parse_flags)
