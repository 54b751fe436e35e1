"""MXNet/InsightFace RecordIO: spec bytes built by hand, round trips, split records, bad indexes."""
from __future__ import annotations

import os
import struct

import cv2
import numpy as np
import pytest

from enas_face.data import recordio
from enas_face.data.recordio import IRHeader, RecordIOError, RecordIOReader

MAGIC = struct.pack("<I", 0xCED7230A)


def _jpeg(seed: int) -> bytes:
  image = np.random.default_rng(seed).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
  ok, encoded = cv2.imencode(".jpg", image)
  assert ok
  return encoded.tobytes()


def _chunk(flag: int, data: bytes) -> bytes:
  """One chunk written straight from the spec: magic, lrecord, data, zero pad to 4 bytes."""
  return MAGIC + struct.pack("<I", (flag << 29) | len(data)) + data + b"\0" * (-len(data) % 4)


def _idx_lines(idx_path) -> list[tuple[int, int]]:
  with open(idx_path) as lines:
    return [tuple(map(int, line.split("\t"))) for line in lines]


@pytest.fixture
def samples():
  """Six tiny JPEGs of three identities, grouped by label."""
  return [(label, _jpeg(number)) for number, label in enumerate([0, 0, 4, 4, 4, 7])]


def test_record_bytes_match_mxnet_layout():
  # MXIndexedRecordIO's docstring: writing 'record_%d' moves tell() by 16 each time.
  assert recordio.encode_record(b"record_0") == MAGIC + struct.pack("<I", 8) + b"record_0"
  assert recordio.encode_record(b"abcde") == MAGIC + struct.pack("<I", 5) + b"abcde\0\0\0"
  assert recordio.encode_record(b"") == MAGIC + b"\0\0\0\0"
  # The magic at an aligned position splits the record (and is dropped); unaligned it stays.
  assert recordio.encode_record(b"abcd" + MAGIC + b"xy") == _chunk(1, b"abcd") + _chunk(3, b"xy")
  assert recordio.encode_record(MAGIC) == _chunk(1, b"") + _chunk(3, b"")
  assert recordio.encode_record(b"ab" + MAGIC) == _chunk(0, b"ab" + MAGIC)


def test_reader_reads_a_file_built_by_hand_from_the_spec(tmp_path):
  first_image = b"\xff\xd8JPEG\xff\xd9"  # 8 bytes; the record is 33 bytes, padded to 36
  first = struct.pack("<IfQQ", 0, 3.0, 0, 0) + first_image + b"z"
  second_head = struct.pack("<IfQQ", 0, 1.0, 1, 0) + b"abcd"  # 28 bytes, magic right after
  rec_bytes = (_chunk(0, first) + _chunk(1, second_head) + _chunk(2, b"") + _chunk(3, b"xyz"))
  assert len(_chunk(0, first)) == 8 + 36
  (tmp_path / "hand.rec").write_bytes(rec_bytes)
  (tmp_path / "hand.idx").write_text("0\t0\n1\t44\n")
  got = list(recordio.iter_insightface(str(tmp_path / "hand.rec")))
  assert got == [(0, 3, first_image + b"z"), (1, 1, b"abcd" + MAGIC + MAGIC + b"xyz")]
  with RecordIOReader(str(tmp_path / "hand.rec")) as reader:
    assert reader.validate() == 2
    assert reader.read_at(44) == second_head + MAGIC + MAGIC + b"xyz"
  # Our writer produces exactly these bytes and this index for the same samples.
  recordio.write_insightface(str(tmp_path / "ours.rec"),
                             [(3, first_image + b"z"), (1, b"abcd" + MAGIC + MAGIC + b"xyz")],
                             with_header=False)
  assert (tmp_path / "ours.rec").read_bytes() == rec_bytes
  assert (tmp_path / "ours.idx").read_text() == "0\t0\n1\t44\n"


def test_round_trip_with_insightface_header(tmp_path, samples):
  rec_path = str(tmp_path / "train.rec")
  assert recordio.write_insightface(rec_path, samples) == 6
  got = list(recordio.iter_insightface(rec_path))
  assert [key for key, _, _ in got] == [1, 2, 3, 4, 5, 6]
  assert [(label, image) for _, label, image in got] == samples
  assert all(isinstance(label, int) for _, label, _ in got)
  decoded = cv2.imdecode(np.frombuffer(got[0][2], np.uint8), cv2.IMREAD_COLOR)
  assert decoded.shape == (8, 8, 3)
  # face2rec layout: images first, then header key 0, then identity records 7..9.
  assert [key for key, _ in _idx_lines(tmp_path / "train.idx")] == [1, 2, 3, 4, 5, 6, 0, 7, 8, 9]
  with RecordIOReader(rec_path) as reader:
    assert reader.keys == list(range(10))
    assert reader.validate() == 10
    header, rest = recordio.unpack_header(reader.read(0))
    assert header.flag == 2 and rest == b""
    np.testing.assert_array_equal(header.label, [7, 10])
    ranges = [recordio.unpack_header(reader.read(key))[0].label.tolist() for key in (7, 8, 9)]
    assert ranges == [[1, 3], [3, 6], [6, 7]]
    image_header, _ = recordio.unpack_header(reader.read(3))
    assert image_header == IRHeader(0, 4.0, 3, 0)


def test_round_trip_without_header(tmp_path, samples):
  rec_path = str(tmp_path / "plain.rec")
  shuffled = [samples[index] for index in (5, 0, 3, 1, 4, 2)]  # any label order is fine
  recordio.write_insightface(rec_path, shuffled, with_header=False)
  got = list(recordio.iter_insightface(rec_path))
  assert [key for key, _, _ in got] == [0, 1, 2, 3, 4, 5]
  assert [(label, image) for _, label, image in got] == shuffled


def test_payloads_holding_the_magic_are_split_and_rejoined_byte_exactly(tmp_path):
  # The 24-byte image header keeps the image 4-byte aligned, so these magics sit on aligned words.
  tricky = [MAGIC, MAGIC + MAGIC, b"ab" + MAGIC + b"cd" + MAGIC, _jpeg(1)[:8] + MAGIC + _jpeg(2),
            _jpeg(3) + b"\0" * (-len(_jpeg(3)) % 4) + MAGIC]
  samples = [(label, image) for label, image in enumerate(tricky)]
  rec_path = str(tmp_path / "split.rec")
  recordio.write_insightface(rec_path, samples)
  assert [(label, image) for _, label, image in recordio.iter_insightface(rec_path)] == samples
  # The file really holds split chunks: walk it chunk by chunk and collect the flags.
  data, position, flags = (tmp_path / "split.rec").read_bytes(), 0, []
  while position < len(data):
    magic, lrecord = struct.unpack_from("<II", data, position)
    assert magic == 0xCED7230A
    flags.append(lrecord >> 29)
    position += 8 + ((lrecord & (2**29 - 1)) + 3) // 4 * 4
  assert flags.count(1) == 5 and flags.count(2) == 1 and flags.count(3) == 5
  with RecordIOReader(rec_path) as reader:
    assert reader.validate() == len(samples) + 1 + len(samples)


def test_multi_label_header_unpacks():
  packed = recordio.pack_header(IRHeader(0, [1.5, 2.0, -3.0], 9, 4), b"image")
  assert struct.unpack_from("<IfQQ", packed) == (3, 0.0, 9, 4)
  header, payload = recordio.unpack_header(packed)
  assert header.flag == 3 and (header.id, header.id2) == (9, 4) and payload == b"image"
  assert header.label.dtype == np.float32
  np.testing.assert_array_equal(header.label, [1.5, 2.0, -3.0])
  scalar_header, _ = recordio.unpack_header(recordio.pack_header(IRHeader(5, 2.0, 1, 0), b""))
  assert scalar_header == IRHeader(0, 2.0, 1, 0)  # a number label forces flag 0, as MXNet does
  with pytest.raises(RecordIOError, match="3 float32 labels"):
    recordio.unpack_header(packed[:30])
  with pytest.raises(RecordIOError, match="shorter than the 24-byte"):
    recordio.unpack_header(b"short")


def test_array_labels_of_face2rec_images_yield_their_first_value(tmp_path):
  # face2rec2 stores image labels as [label, aligned]; InsightFace readers use label[0].
  records = [recordio.pack_header(IRHeader(0, [label, 1.0], key, 0), _jpeg(key))
             for key, label in enumerate([2, 5])]
  offsets = np.cumsum([0] + [len(recordio.encode_record(record)) for record in records])
  (tmp_path / "a.rec").write_bytes(b"".join(map(recordio.encode_record, records)))
  (tmp_path / "a.idx").write_text("".join(f"{key}\t{offsets[key]}\n" for key in range(2)))
  got = list(recordio.iter_insightface(str(tmp_path / "a.rec")))
  assert [(key, label) for key, label, _ in got] == [(0, 2), (1, 5)]


def _rewrite_idx(idx_path, change):
  lines = dict(_idx_lines(idx_path))
  change(lines)
  with open(idx_path, "w") as out:
    out.writelines(f"{key}\t{offset}\n" for key, offset in lines.items())


def test_index_that_disagrees_with_the_rec_is_reported(tmp_path, samples):
  rec_path = str(tmp_path / "train.rec")
  idx_path = str(tmp_path / "train.idx")
  recordio.write_insightface(rec_path, samples)
  size = os.path.getsize(rec_path)

  def shift(lines):
    lines[3] += 4
  _rewrite_idx(idx_path, shift)
  with RecordIOReader(rec_path) as reader:
    with pytest.raises(RecordIOError, match=r"train\.rec.*train\.idx.*key 3 .*no record starts"):
      reader.read(3)
    with pytest.raises(RecordIOError, match="key 3"):
      reader.validate()
  with pytest.raises(RecordIOError, match="key 3"):
    list(recordio.iter_insightface(rec_path))

  recordio.write_insightface(rec_path, samples)

  def beyond_end(lines):
    lines[5] = size + 100
  _rewrite_idx(idx_path, beyond_end)
  with RecordIOReader(rec_path) as reader:
    with pytest.raises(RecordIOError, match=r"train\.idx.*key 5 .*beyond the end"):
      reader.read(5)

  recordio.write_insightface(rec_path, samples)
  _rewrite_idx(idx_path, lambda lines: lines.pop(2))
  with pytest.raises(RecordIOError, match=r"train\.idx.*train\.rec.*missing from the index: 2$"):
    list(recordio.iter_insightface(rec_path))
  with RecordIOReader(rec_path) as reader:
    with pytest.raises(RecordIOError, match=r"train\.idx: key 2 is not in the index"):
      reader.read(2)

  recordio.write_insightface(rec_path, samples)

  def duplicate(lines):
    lines[4] = lines[1]
  _rewrite_idx(idx_path, duplicate)
  with pytest.raises(RecordIOError, match="keys 1 and 4 both point at offset 0"):
    RecordIOReader(rec_path)


def test_offset_into_a_split_record_is_not_a_record_start(tmp_path):
  rec_path = str(tmp_path / "split.rec")
  recordio.write_insightface(rec_path, [(0, b"abcd" + MAGIC + b"efgh")], with_header=False)
  with RecordIOReader(rec_path) as reader:
    assert reader.read(0) == recordio.pack_header(IRHeader(0, 0.0, 0, 0), b"abcd" + MAGIC + b"efgh")
    with pytest.raises(RecordIOError, match="middle of a split record"):
      reader.read_at(8 + 28)
    with pytest.raises(RecordIOError, match="multiples of 4"):
      reader.read_at(2)


def test_truncated_rec_is_reported(tmp_path, samples):
  rec_path = str(tmp_path / "train.rec")
  recordio.write_insightface(rec_path, samples, with_header=False)
  last_key, last_offset = _idx_lines(tmp_path / "train.idx")[-1]
  with open(rec_path, "r+b") as rec_file:
    rec_file.truncate(os.path.getsize(rec_path) - 10)
  with RecordIOReader(rec_path) as reader:
    assert reader.read(0) == recordio.pack_header(IRHeader(0, 0.0, 0, 0), samples[0][1])
    with pytest.raises(RecordIOError, match=rf"train\.rec.*key {last_key} at offset {last_offset}"
                                            r".*truncated"):
      reader.read(last_key)
    with pytest.raises(RecordIOError, match="truncated"):
      reader.validate()


def test_malformed_idx_lines_name_the_line(tmp_path):
  idx_path = tmp_path / "bad.idx"
  idx_path.write_text("0\t0\n1\t16\n2 16 extra\n")
  with pytest.raises(RecordIOError, match=r"bad\.idx, line 3"):
    recordio.read_index(str(idx_path))
  idx_path.write_text("0\t0\n\nx\t16\n")
  with pytest.raises(RecordIOError, match=r"bad\.idx, line 3: .*integers"):
    recordio.read_index(str(idx_path))
  idx_path.write_text("0\t0\n0\t16\n")
  with pytest.raises(RecordIOError, match=r"line 2: key 0 appears twice"):
    recordio.read_index(str(idx_path))
  idx_path.write_text("0\t0\n\n1\t16\n")
  assert recordio.read_index(str(idx_path)) == {0: 0, 1: 16}


def test_bad_labels_and_headers_are_reported(tmp_path):
  rec_path = tmp_path / "x.rec"
  rec_path.write_bytes(recordio.encode_record(recordio.pack_header(IRHeader(0, 2.5, 0, 0), b"i")))
  (tmp_path / "x.idx").write_text("0\t0\n")
  with pytest.raises(RecordIOError, match=r"x\.rec.*key 0: label is 2\.5"):
    list(recordio.iter_insightface(str(rec_path)))
  # A header record announcing image keys 1..4 while the index only has 1..2.
  records = [recordio.pack_header(IRHeader(2, [5.0, 6.0], 0, 0), b"")] + [
      recordio.pack_header(IRHeader(0, 0.0, key, 0), b"i") for key in (1, 2)]
  encoded = [recordio.encode_record(record) for record in records]
  rec_path.write_bytes(b"".join(encoded))
  (tmp_path / "x.idx").write_text(f"0\t0\n1\t{len(encoded[0])}\n2\t{len(encoded[0]) + len(encoded[1])}\n")
  with pytest.raises(RecordIOError, match="2 are missing from the index: 3, 4"):
    list(recordio.iter_insightface(str(rec_path)))


def test_writer_needs_samples_grouped_by_label_with_header(tmp_path):
  with pytest.raises(ValueError, match="sample 2: label 0 appeared before"):
    recordio.write_insightface(str(tmp_path / "t.rec"), [(0, b"a"), (1, b"b"), (0, b"c")])
  assert not os.listdir(tmp_path)  # nothing half-written is left behind
  with pytest.raises(ValueError, match="label must be an integer"):
    recordio.write_insightface(str(tmp_path / "t.rec"), [(1.5, b"a")])
