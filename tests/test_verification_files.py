"""LFW pairs files (real View 1 files, synthetic variants) and safe loading of InsightFace .bin."""
from __future__ import annotations

import os
import pickle
import re
import tarfile

import numpy as np
import pytest

from enas_face.data import verification_files as vf
from enas_face.data.verification_files import PairEntry, PairsFileError, UnsafePickleError

# --- LFW pairs.txt -----------------------------------------------------------------------------

SMALL_PAIRS = """\
Abel_Pacheco\t1\t4
Akhmed_Zakayev\t1\t3
Aaron_Sorkin\t2\tJohn_O'Neil\t1
Jean-Marc_de_La_Sabliere  1  Zico 3
"""
SMALL_ENTRIES = [
    PairEntry(("Abel_Pacheco", 1), ("Abel_Pacheco", 4), True),
    PairEntry(("Akhmed_Zakayev", 1), ("Akhmed_Zakayev", 3), True),
    PairEntry(("Aaron_Sorkin", 2), ("John_O'Neil", 1), False),
    PairEntry(("Jean-Marc_de_La_Sabliere", 1), ("Zico", 3), False),
]


def _write(tmp_path, text: str, name: str = "pairs.txt") -> str:
  path = tmp_path / name
  path.write_text(text)
  return str(path)


def test_real_dev_test_pairs(shared_data):
  entries = vf.parse_lfw_pairs(os.path.join(shared_data, "lfw", "pairsDevTest.txt"))
  assert len(entries) == 1000
  assert all(entry.is_same for entry in entries[:500])
  assert not any(entry.is_same for entry in entries[500:])
  assert entries[0] == PairEntry(("Abdullah_Gul", 13), ("Abdullah_Gul", 14), True)
  assert entries[500] == PairEntry(("AJ_Lamas", 1), ("Zach_Safrin", 1), False)
  assert all(entry.first[0] == entry.second[0] for entry in entries[:500])
  assert all(entry.first[0] != entry.second[0] for entry in entries[500:])


def test_real_dev_train_pairs(shared_data):
  entries = vf.parse_lfw_pairs(os.path.join(shared_data, "lfw", "pairsDevTrain.txt"))
  assert len(entries) == 2200 and sum(entry.is_same for entry in entries) == 1100
  assert entries[0] == PairEntry(("Aaron_Peirsol", 1), ("Aaron_Peirsol", 2), True)


def test_file_without_header_parses_to_the_same_entries(tmp_path, shared_data):
  with open(os.path.join(shared_data, "lfw", "pairsDevTest.txt")) as pairs_file:
    lines = pairs_file.read().splitlines()
  assert lines[0].strip() == "500"
  headerless = _write(tmp_path, "\n".join(lines[1:]) + "\n")
  assert vf.parse_lfw_pairs(headerless) == vf.parse_lfw_pairs(
      os.path.join(shared_data, "lfw", "pairsDevTest.txt"))


def test_names_with_punctuation_and_mixed_whitespace(tmp_path):
  assert vf.parse_lfw_pairs(_write(tmp_path, SMALL_PAIRS)) == SMALL_ENTRIES
  assert vf.parse_lfw_pairs(_write(tmp_path, "2\n" + SMALL_PAIRS + "\n\n")) == SMALL_ENTRIES
  assert vf.identities_in_pairs(SMALL_ENTRIES) == {
      "Abel_Pacheco", "Akhmed_Zakayev", "Aaron_Sorkin", "John_O'Neil", "Jean-Marc_de_La_Sabliere",
      "Zico"}
  assert vf.lfw_image_relpath("John_O'Neil", 7) == "John_O'Neil/John_O'Neil_0007.jpg"


def test_view2_folds_header(tmp_path):
  fold = "A\t1\t2\nB\t1\t2\nA\t1\tB\t2\nC\t1\tD\t1\n"
  entries = vf.parse_lfw_pairs(_write(tmp_path, "3\t2\n" + fold * 3))
  assert len(entries) == 12
  assert [entry.is_same for entry in entries[:4]] == [True, True, False, False]
  with pytest.raises(PairsFileError, match=r"line 1: header says 3 folds of 2 same \+ 2 different "
                                           r"pairs = 12 pairs, but the file has 8"):
    vf.parse_lfw_pairs(_write(tmp_path, "3 2\n" + fold * 2))


def test_single_number_header_must_match(tmp_path):
  with pytest.raises(PairsFileError, match=r"pairs\.txt, line 1: header says 3 same \+ 3 different "
                                           r"pairs = 6 pairs, but the file has 4 \(2 same, 2 different\)"):
    vf.parse_lfw_pairs(_write(tmp_path, "3\n" + SMALL_PAIRS))
  with pytest.raises(PairsFileError, match=r"but the file has 4 \(2 same, 2 different\)"):
    vf.parse_lfw_pairs(_write(tmp_path, "4\n" + SMALL_PAIRS))  # 4 would be the total, not per kind


@pytest.mark.parametrize("bad_line, message", [
    ("Someone\t1", r"line 3: expected 'Name i j' or 'Name1 i Name2 j', got 2 fields"),
    ("Someone\t1\t2\t3\t4", "line 3: expected .* got 5 fields"),
    ("Someone\tone\t2", r"line 3: image number 'one' is not an integer"),
    ("Someone\t1\tOther\t2.5", r"line 3: image number '2\.5' is not an integer"),
    ("Someone\t0\t2", "line 3: image number 0 is below 1"),
    ("Someone\t3\t3", "line 3: pairs image 3 of Someone with itself"),
    ("Someone\t1\tSomeone\t2", "line 3: a different-person line names Someone twice"),
])
def test_malformed_lines_name_the_line(tmp_path, bad_line, message):
  text = "1\nA\t1\t2\n" + bad_line + "\nA\t1\tB\t1\n"
  with pytest.raises(PairsFileError, match=r"pairs\.txt, " + message):
    vf.parse_lfw_pairs(_write(tmp_path, text))


def test_resolve_reports_every_missing_image(tmp_path):
  path = _write(tmp_path, SMALL_PAIRS)
  all_images = {vf.lfw_image_relpath(*image) for entry in SMALL_ENTRIES
                for image in (entry.first, entry.second)}
  gone = {"Abel_Pacheco/Abel_Pacheco_0004.jpg", "John_O'Neil/John_O'Neil_0001.jpg",
          "Zico/Zico_0003.jpg"}
  with pytest.raises(PairsFileError) as raised:
    vf.resolve_lfw_pairs(path, all_images - gone)
  message = str(raised.value)
  assert "pairs.txt: 3 of the 8 images" in message
  listed = set(re.findall(r"[\w'-]+/[\w'-]+\.jpg", message))
  assert listed == gone
  image_paths, pairs, is_same = vf.resolve_lfw_pairs(path, all_images.__contains__)
  assert image_paths[:3] == ["Abel_Pacheco/Abel_Pacheco_0001.jpg",
                             "Abel_Pacheco/Abel_Pacheco_0004.jpg",
                             "Akhmed_Zakayev/Akhmed_Zakayev_0001.jpg"]
  assert pairs.dtype == np.int64 and pairs.tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]]
  np.testing.assert_array_equal(is_same, [True, True, False, False])


def test_resolve_truncates_a_long_missing_list(tmp_path):
  text = "".join(f"Person_{number}\t1\t2\n" for number in range(30))
  with pytest.raises(PairsFileError, match=r"60 of the 60 images .*Person_9_0002\.jpg \.\.\. and 40 "
                                           r"more$"):
    vf.resolve_lfw_pairs(_write(tmp_path, text), set())


@pytest.fixture(scope="session")
def lfw_member_paths(shared_data) -> set[str]:
  """Image paths relative to the LFW folder, read from the archive's member list (no extraction)."""
  prefix = "lfw-deepfunneled/"
  with tarfile.open(os.path.join(shared_data, "lfw", "lfw-deepfunneled.tgz"), "r:gz") as archive:
    return {member.name[len(prefix):] for member in archive
            if member.isfile() and member.name.startswith(prefix) and member.name.endswith(".jpg")}


def test_real_dev_test_pairs_resolve_against_the_lfw_archive(shared_data, lfw_member_paths):
  assert len(lfw_member_paths) == 13233
  pairs_path = os.path.join(shared_data, "lfw", "pairsDevTest.txt")
  image_paths, pairs, is_same = vf.resolve_lfw_pairs(pairs_path, lfw_member_paths)
  print(f"pairsDevTest.txt: {len(pairs)} pairs over {len(image_paths)} unique images, "
        f"{len(vf.identities_in_pairs(vf.parse_lfw_pairs(pairs_path)))} identities")
  assert pairs.shape == (1000, 2) and is_same.sum() == 500
  assert len(image_paths) == len(set(image_paths)) == pairs.max() + 1
  assert len(image_paths) == 1549  # measured (also by awk over the file): 451 of 2000 slots reuse an image
  with pytest.raises(PairsFileError, match="1 of the 1549 images"):
    vf.resolve_lfw_pairs(pairs_path, lfw_member_paths - {image_paths[123]})


# --- InsightFace .bin --------------------------------------------------------------------------

IMAGES = [b"\xff\xd8jpeg-0\xff\xd9", b"\x89PNG-1", b"", b"\xff\xd8\x00\x01\xff\xd9"]


@pytest.mark.parametrize("protocol", [2, 4])
def test_bin_round_trip_and_protocols(tmp_path, protocol):
  path = str(tmp_path / "lfw.bin")
  vf.save_bin(path, IMAGES, np.array([True, False]), protocol=protocol)
  images, is_same = vf.load_bin(path)
  assert images == IMAGES
  assert is_same.dtype == bool and is_same.tolist() == [True, False]
  # A pickle written the plain way (as insightface's scripts do) loads too.
  with open(path, "wb") as bin_file:
    pickle.dump((IMAGES, [False, True]), bin_file, protocol=protocol)
  assert vf.load_bin(path)[1].tolist() == [False, True]


@pytest.mark.parametrize("protocol", [2, 4])
def test_bin_with_numpy_bools_and_bytearrays(tmp_path, protocol):
  path = tmp_path / "agedb_30.bin"
  path.write_bytes(pickle.dumps((IMAGES[:2] + [bytearray(b"ab"), bytearray()],
                                 [np.bool_(True), np.True_ & False]), protocol=protocol))
  images, is_same = vf.load_bin(str(path))
  assert images == IMAGES[:2] + [b"ab", b""]
  assert is_same.tolist() == [True, False]
  if protocol == 2:  # numpy 1.x named the module numpy.core.multiarray
    data = path.read_bytes()
    assert b"cnumpy._core.multiarray\nscalar\n" in data
    path.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert vf.load_bin(str(path))[1].tolist() == [True, False]


def test_python2_style_pickle(tmp_path):
  # Protocol 0 as Python 2 wrote it: str images (S'...'), bools as I01/I00.
  text = (b"((lp0\nS'\\xff\\xd8ab'\np1\naS'cd'\np2\naS'ef'\np3\naS'gh'\np4\na"
          b"(lp5\nI01\naI00\natp6\n.")
  (tmp_path / "cfp_fp.bin").write_bytes(text)
  images, is_same = vf.load_bin(str(tmp_path / "cfp_fp.bin"))
  assert images == [b"\xff\xd8ab", b"cd", b"ef", b"gh"] and is_same.tolist() == [True, False]


class _Evil:
  """Runs a shell command when unpickled."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return os.system, (f"touch {self.marker}",)


class _EvilEval:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return eval, (f"open({str(self.marker)!r}, 'w').close()",)


class _Instance:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return _Instance, (self.marker,)


@pytest.mark.parametrize("make, refused", [
    (lambda marker: (_Evil(marker), [True]), r"refused global (posix|os|nt)\.system"),
    (lambda marker: ([b"a", b"b"], [_EvilEval(marker)]), r"refused global (__builtin__|builtins)\.eval"),
    (lambda marker: ([b"a", _Instance(marker)], [True]), r"refused global .*_Instance"),
])
@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_malicious_pickle_is_refused_without_running(tmp_path, make, refused, protocol):
  marker = tmp_path / "marker"
  path = tmp_path / "evil.bin"
  path.write_bytes(pickle.dumps(make(marker), protocol=protocol))
  with pytest.raises(UnsafePickleError, match=r"evil\.bin: " + refused):
    vf.load_bin(str(path))
  assert not marker.exists()


def test_hand_made_malicious_pickles_are_refused(tmp_path):
  marker = tmp_path / "marker"
  path = tmp_path / "evil.bin"
  cases = {
      # builtins.exec through the Python 2 module name
      f"c__builtin__\nexec\n(S'open({str(marker)!r}, \"w\").close()'\ntR.".encode(): "__builtin__.exec",
      # an allowed global abused with other arguments: huge bytes() and a non-latin1 codec
      b"\x80\x02c__builtin__\nbytes\nJ\x00\x00\x00\x7f\x85R.": r"refused call bytes\(int\)",
      b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x04\x00\x00\x00zlib\x86R.":
          r"refused call _codecs\.encode\(str, str\)",
      # numpy arrays are refused on purpose (only numpy bool scalars are accepted)
      pickle.dumps(([b"a", b"b"], np.array([True]))): r"numpy\.(_core|core)\.multiarray\._reconstruct",
      pickle.dumps(([b"a", b"b"], [np.float64(1.0)])): r"numpy\.dtype\('f8'\)",
  }
  for data, refused in cases.items():
    path.write_bytes(data)
    with pytest.raises(UnsafePickleError, match=refused):
      vf.load_bin(str(path))
  assert not marker.exists()


@pytest.mark.parametrize("content, message", [
    (([b"a", b"b"], [True], [1]), "expected a pickled .images, issame. pair, found a tuple of 3"),
    ({"images": []}, r"expected a pickled .images, issame. pair, found dict"),
    (([b"a", b"b", b"c"], [True]), r"found 3 images for 1 issame flags; expected 2 \* 1 = 2"),
    (([b"a", b"b"], ["yes"]), r"issame\[0\] is str of length 3, expected a bool"),
    (([b"a", "b"], [True]), "image 1 is str of length 1, expected encoded bytes"),
    (([b"a", b"b"], [2]), r"issame\[0\] is int 2"),
    ((b"ab", [True]), "expected images as a list, found bytes"),
])
def test_wrong_structure_is_reported(tmp_path, content, message):
  path = tmp_path / "bad.bin"
  path.write_bytes(pickle.dumps(content, protocol=4))
  with pytest.raises(PairsFileError, match=r"bad\.bin: " + message):
    vf.load_bin(str(path))


def test_truncated_bin_is_reported(tmp_path):
  path = str(tmp_path / "lfw.bin")
  vf.save_bin(path, IMAGES, [True, False])
  with open(path, "rb") as bin_file:
    data = bin_file.read()
  for cut in (len(data) - 1, len(data) // 2, 3, 0):
    with open(path, "wb") as bin_file:
      bin_file.write(data[:cut])
    with pytest.raises(PairsFileError, match=r"lfw\.bin: not a readable verification pickle"):
      vf.load_bin(path)


def test_save_bin_checks_its_input(tmp_path):
  with pytest.raises(ValueError, match=r"3 images for 2 pairs"):
    vf.save_bin(str(tmp_path / "x.bin"), IMAGES[:3], [True, False])
  with pytest.raises(ValueError, match="image 0 is str"):
    vf.save_bin(str(tmp_path / "x.bin"), ["a", b"b"], [True])
  assert not os.listdir(tmp_path)


# --- a larger set from the people of a pairs file (tools/make_pairs.py) ----------------------

def test_people_pairs_are_every_same_pair_and_as_many_distinct_different_ones(tmp_path):
  images = {"Ann": [1, 2, 3], "Bob": [1, 2], "Cid": [4]}
  entries = vf.people_pairs(images, np.random.default_rng(0))
  same = [e for e in entries if e.is_same]
  different = [e for e in entries if not e.is_same]
  assert {(e.first, e.second) for e in same} == {
      (("Ann", 1), ("Ann", 2)), (("Ann", 1), ("Ann", 3)), (("Ann", 2), ("Ann", 3)),
      (("Bob", 1), ("Bob", 2))}
  assert len(different) == 4
  assert all(e.first[0] != e.second[0] for e in different)
  assert len({tuple(sorted((e.first, e.second))) for e in different}) == 4
  assert entries == vf.people_pairs(images, np.random.default_rng(0))  # seeded
  path = tmp_path / "pairs.txt"
  path.write_text(vf.format_lfw_pairs(entries))
  assert vf.parse_lfw_pairs(str(path)) == entries  # the header "4" checks the counts


def test_pairs_in_folds_put_both_kinds_in_every_contiguous_fold(tmp_path):
  """folds = F: the header "F N" and F blocks of N same + N different pairs, read back by
  parse_lfw_pairs (which checks the header) in that order; the remainder is left out."""
  images = {"Ann": [1, 2, 3, 4, 5], "Bob": [1, 2, 3], "Cid": [1, 2]}
  entries = vf.people_pairs(images, np.random.default_rng(0))  # 10 + 3 + 1 = 14 same
  path = tmp_path / "pairs.txt"
  path.write_text(vf.format_lfw_pairs(entries, folds=3))
  assert path.read_text().splitlines()[0] == "3\t4"
  read = vf.parse_lfw_pairs(str(path))
  assert len(read) == 24
  for k in range(3):
    assert [e.is_same for e in read[8 * k:8 * (k + 1)]] == [True] * 4 + [False] * 4
  assert set(read) <= set(entries)
  with pytest.raises(ValueError, match="20 folds need at least 20 same pairs, got 14"):
    vf.format_lfw_pairs(entries, folds=20)


def test_people_pairs_cap_and_refusals():
  images = {"Ann": list(range(1, 11)), "Bob": [1, 2, 3, 4]}
  capped = vf.people_pairs(images, np.random.default_rng(1), max_same_per_person=5)
  assert sum(e.is_same and e.first[0] == "Ann" for e in capped) == 5
  assert sum(e.is_same and e.first[0] == "Bob" for e in capped) == 5  # C(4, 2) = 6, capped
  with pytest.raises(ValueError, match="45 same-person pairs but only 0 different-person"):
    vf.people_pairs({"Ann": list(range(1, 11))}, np.random.default_rng(0))
  with pytest.raises(ValueError, match="as many same as different"):
    vf.format_lfw_pairs(capped[:3])


def test_make_pairs_tool_writes_a_set_of_the_pairs_files_people(tmp_path):
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  lfw = tmp_path / "lfw"
  for name, count in (("Ann_A", 3), ("Bob_B", 2), ("Cid_C", 2), ("Outsider", 5)):
    (lfw / name).mkdir(parents=True)
    for i in range(1, count + 1):
      (lfw / name / f"{name}_{i:04d}.jpg").write_bytes(b"")
  (tmp_path / "people.txt").write_text("1\nAnn_A\t1\t2\nAnn_A\t1\tBob_B\t1\n")
  output = tmp_path / "out" / "pairs.txt"
  result = subprocess.run([sys.executable, os.path.join(root, "tools", "make_pairs.py"),
                           f"--people_from={tmp_path / 'people.txt'}", f"--images={lfw}",
                           f"--output={output}", "--folds=1"], capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  assert "4 same + 4 different pairs (1 folds) of 2 people (5 images" in result.stdout
  entries = vf.parse_lfw_pairs(str(output))
  assert vf.identities_in_pairs(entries) == {"Ann_A", "Bob_B"}  # never Cid_C or Outsider
  (tmp_path / "people.txt").write_text("1\nAnn_A\t1\t2\nAnn_A\t1\tZed_Z\t1\n")
  result = subprocess.run([sys.executable, os.path.join(root, "tools", "make_pairs.py"),
                           f"--people_from={tmp_path / 'people.txt'}", f"--images={lfw}",
                           f"--output={output}"], capture_output=True, text=True)
  assert result.returncode != 0 and "no images of 1 of the 2 people" in result.stderr
