"""Writes a larger verification set from the people of a pairs file: all their same-person
pairs and as many different-person pairs, in LFW View 2's layout (--folds blocks of as many
same as different pairs).

    python tools/make_pairs.py --people_from=data/lfw/pairsDevTest.txt \\
        --images=data/lfw/aligned_112 --output=runs/pairs/devtest_people.txt
    python -m enas_face.main ... --pairs=lfw:data/lfw/pairsDevTest.txt,data/lfw/aligned_112,\\
lfw:runs/pairs/devtest_people.txt,data/lfw/aligned_112

The people are those named by --people_from (for LFW View 1: pairsDevTest's, which
--exclude_pair_identities keeps out of training, so the new set is disjoint from training by
identity). --images is the folder the pairs will be read from: a folder <Name>/<Name>_NNNN.jpg
or an aligned TFRecord folder (its manifest's source folder, less the images alignment
rejected). Same-person pairs: every pair of a person's images (--max_same_per_person caps
each person, drawn at random; 0: all); different-person pairs: as many, two images drawn
uniformly from all the set's images, of two different people, no pair twice (seeded by
--seed). Pairs of people with many images dominate both halves, as they do in LFW.

The file is written as LFW View 2's pairs.txt is: --folds blocks, each of N same and N
different pairs (the evaluator's folds; a View 1 file, one block, is split the same way by
data/real.py's order_by_fold, so --folds=1 gives the same folds but for the few pairs left
over). Same pairs come in person order, so a person's pairs mostly share a fold: the 10-fold
std is then a spread between people. Measured with dlib's embeddings on pairsDevTest's
people (47,040 pairs): 0.9882 +- 0.0067; with the same pairs shuffled across the folds
0.9883 +- 0.0018.
"""
from __future__ import annotations

import os
import re
import sys

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from enas_face import runlog  # pylint: disable=wrong-import-position
from enas_face.data import sources, verification_files  # pylint: disable=wrong-import-position

flags.DEFINE_string("people_from", None, "LFW pairs file whose people make the set.")
flags.DEFINE_string("images", None, "The folder the pairs will be read from: <Name>/"
                    "<Name>_NNNN.jpg, or an aligned TFRecord folder.")
flags.DEFINE_string("output", None, "The pairs file to write.")
flags.DEFINE_integer("max_same_per_person", 0, "Same-person pairs per person at most (drawn "
                     "at random); 0: all.", lower_bound=0)
flags.DEFINE_integer("seed", 0, "Seeds the draws.")
flags.DEFINE_integer("folds", 10, "Written as LFW View 2's layout: this many blocks of N same + "
                     "N different pairs, the evaluation's folds (the last same % folds pairs of "
                     "each kind are left out); 1: View 1's layout, all same pairs then all "
                     "different.", lower_bound=1)
FLAGS = flags.FLAGS
IMAGE_NAME = re.compile(r"^(?P<name>.+)_(?P<number>\d{4})\.jpg$")


def available_images(images_dir: str, people: set[str]) -> dict[str, list[int]]:
  """person -> the numbers of their images in `images_dir` (an LFW folder, or an aligned
  TFRecord folder: its source folder less its rejects)."""
  rejected: set[str] = set()
  manifest_path = os.path.join(images_dir, sources.MANIFEST)
  if os.path.isfile(manifest_path):
    manifest = runlog.read_json(manifest_path)
    rejected = {r["path"] for r in manifest.get("rejects", [])}
    images_dir = manifest["source"]
    if not os.path.isdir(images_dir):
      raise SystemExit(f"--images={FLAGS.images}: its source folder {images_dir} (manifest) is "
                       "not here; give the LFW folder itself")
  out = {}
  for name in sorted(people):
    folder = os.path.join(images_dir, name)
    numbers = []
    for file_name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
      match = IMAGE_NAME.match(file_name)
      if match and match["name"] == name and f"{name}/{file_name}" not in rejected:
        numbers.append(int(match["number"]))
    if numbers:
      out[name] = numbers
  return out


def main(argv):
  del argv
  for name in ("people_from", "images", "output"):
    if not FLAGS[name].value:
      raise SystemExit(f"--{name} is required")
  people = verification_files.identities_in_pairs(
      verification_files.parse_lfw_pairs(FLAGS.people_from))
  images = available_images(FLAGS.images, people)
  missing = sorted(people - set(images))
  if missing:
    raise SystemExit(f"--images={FLAGS.images}: no images of {len(missing)} of the "
                     f"{len(people)} people of --people_from, e.g. {', '.join(missing[:5])}")
  entries = verification_files.people_pairs(images, np.random.default_rng(FLAGS.seed),
                                            FLAGS.max_same_per_person)
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
  runlog.write_text(FLAGS.output, verification_files.format_lfw_pairs(entries, FLAGS.folds))
  kept = len(entries) // 2 // FLAGS.folds * FLAGS.folds
  print(f"{FLAGS.output}: {kept} same + {kept} different pairs ({FLAGS.folds} folds) of "
        f"{len(images)} people ({sum(len(v) for v in images.values())} images, "
        f"{sum(len(v) >= 2 for v in images.values())} with a same-person pair)")


if __name__ == "__main__":
  app.run(main)
