"""Writes an insightface-style verification .bin from an LFW pairs file.

    python tools/lfw_pairs_to_bin.py --pairs=PAIRS.txt --images=DIR --output=OUT.bin

DIR is an aligned TFRecord folder (tools/align_dataset.py) or a folder
<Name>/<Name>_NNNN.jpg. The .bin holds 2P JPEG images (pair p = images 2p, 2p+1, in the
pairs file's order) and P same/different flags, as insightface's lfw.bin / cfp_fp.bin /
agedb_30.bin; read it back with --pairs=bin:OUT.bin.
"""
from __future__ import annotations

import os
import sys

import cv2
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from enas_face.data import images as image_io  # pylint: disable=wrong-import-position
from enas_face.data import sources, tfrecord, verification_files  # pylint: disable=wrong-import-position

flags.DEFINE_string("pairs", None, "LFW pairs file (pairsDevTest.txt, pairs.txt, ...).")
flags.DEFINE_string("images", None, "Aligned TFRecord folder or LFW image folder.")
flags.DEFINE_string("output", None, "The .bin to write.")
flags.DEFINE_integer("jpeg_quality", 95, "JPEG quality of the stored images.", lower_bound=1,
                     upper_bound=100)
FLAGS = flags.FLAGS


def main(argv):
  del argv
  relpaths, pairs, is_same = verification_files.resolve_lfw_pairs(
      FLAGS.pairs, (lambda _: True) if os.path.isfile(os.path.join(FLAGS.images, sources.MANIFEST))
      else (lambda rel: os.path.isfile(os.path.join(FLAGS.images, rel))))
  if os.path.isfile(os.path.join(FLAGS.images, sources.MANIFEST)):
    faces = tfrecord.lookup_images(FLAGS.images, relpaths)
  else:
    faces = [image_io.read_image(os.path.join(FLAGS.images, rel)) for rel in relpaths]
  encoded = [cv2.imencode(".jpg", cv2.cvtColor(face, cv2.COLOR_RGB2BGR),
                          [cv2.IMWRITE_JPEG_QUALITY, FLAGS.jpeg_quality])[1].tobytes()
             for face in faces]
  verification_files.save_bin(FLAGS.output, [encoded[i] for pair in pairs for i in pair], is_same)
  print(f"{FLAGS.output}: {len(is_same)} pairs ({int(is_same.sum())} same), "
        f"{len(relpaths)} distinct images")


if __name__ == "__main__":
  flags.mark_flags_as_required(["pairs", "images", "output"])
  app.run(main)
