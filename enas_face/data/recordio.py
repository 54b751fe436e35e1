"""MXNet RecordIO files as InsightFace ships its training sets (train.rec + train.idx).

Read and written with struct/numpy alone; MXNet is not needed.

Record layout (dmlc-core recordio, little-endian): uint32 magic 0xced7230a,
uint32 lrecord (upper 3 bits: chunk flag, lower 29 bits: length), the data,
zero padding to a multiple of 4 bytes. The writer cuts a payload wherever the
magic word sits at a 4-byte aligned position inside it and drops that word:
chunk flags 1 (first), 2 (middle), 3 (last) mark the pieces, 0 a whole record;
a reader rejoins the pieces with the magic word between them. Records therefore
start at 4-byte aligned offsets, and no aligned word inside a record equals the
magic, which is what lets a reader check an index offset cheaply.

The `.idx` file has one "key<TAB>offset" line per record. An image record's
payload is MXNet's IRHeader ('<IfQQ': flag, label, id, id2), then `flag`
float32 labels when flag > 0 (the label becomes that array), then the encoded
image. InsightFace adds a header record at key 0 (flag 2, no image, label
[first identity key, end of identity keys]); image keys are 1 .. label[0]-1 and
each identity record holds the [start, end) image keys of one identity.
"""
from __future__ import annotations

import numbers
import os
import struct
import threading
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import numpy as np
from absl import logging

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_CHUNK_HEAD = struct.Struct("<II")
_LENGTH_BITS = 29
_LENGTH_MASK = (1 << _LENGTH_BITS) - 1
WHOLE, FIRST, MIDDLE, LAST = 0, 1, 2, 3  # chunk flags
_IR_HEADER = struct.Struct("<IfQQ")  # 24 bytes, the same with or without native alignment
IR_HEADER_SIZE = _IR_HEADER.size
# float32 holds every integer up to 2**24 exactly; labels and keys are stored as float32.
_MAX_EXACT_FLOAT32_INT = 1 << 24


class RecordIOError(ValueError):
  """A .rec/.idx pair that is malformed or whose index disagrees with the records."""


class IRHeader(NamedTuple):
  """MXNet's image-record header. label: a float when flag == 0, else float32 [flag]."""
  flag: int
  label: float | np.ndarray
  id: int
  id2: int


def _padded(length: int) -> int:
  return (length + 3) & ~3


def read_index(idx_path: str) -> dict[int, int]:
  """Key -> byte offset from an MXNet .idx file ("key<TAB>offset" lines; blank lines skipped)."""
  index: dict[int, int] = {}
  try:
    with open(idx_path, encoding="ascii") as lines:
      for line_number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
          continue
        if len(fields) != 2:
          raise RecordIOError(f"{idx_path}, line {line_number}: expected 'key<TAB>offset', "
                              f"got {line.rstrip()!r}")
        try:
          key, offset = int(fields[0]), int(fields[1])
        except ValueError:
          raise RecordIOError(f"{idx_path}, line {line_number}: key and offset must be integers, "
                              f"got {line.rstrip()!r}") from None
        if offset < 0:
          raise RecordIOError(f"{idx_path}, line {line_number}: negative offset {offset}")
        if key in index:
          raise RecordIOError(f"{idx_path}, line {line_number}: key {key} appears twice "
                              f"(offsets {index[key]} and {offset})")
        index[key] = offset
  except UnicodeDecodeError as error:
    raise RecordIOError(f"{idx_path}: not a text index file ({error})") from None
  return index


def encode_record(payload: bytes) -> bytes:
  """The bytes MXNet's RecordIOWriter writes for one payload (split where the magic occurs)."""
  payload = bytes(payload)
  length = len(payload)
  if length > _LENGTH_MASK:
    raise ValueError(f"a RecordIO record holds at most {_LENGTH_MASK} bytes, got {length}")
  aligned_words = np.frombuffer(payload, dtype="<u4", count=length // 4)
  cuts = (np.flatnonzero(aligned_words == MAGIC) * 4).tolist()
  parts, start = [], 0
  for cut in cuts:
    # Chunks before the last one are whole words long, so they need no padding.
    flag = FIRST if start == 0 else MIDDLE
    parts += [_CHUNK_HEAD.pack(MAGIC, (flag << _LENGTH_BITS) | (cut - start)), payload[start:cut]]
    start = cut + 4
  flag = LAST if cuts else WHOLE
  rest = length - start
  parts += [_CHUNK_HEAD.pack(MAGIC, (flag << _LENGTH_BITS) | rest), payload[start:],
            b"\0" * (_padded(rest) - rest)]
  return b"".join(parts)


class RecordIOReader:
  """Random access to the records of a .rec file through its .idx index.

  Safe to share between threads (reads hold a lock). Use as a context manager or call close().
  """

  def __init__(self, rec_path: str, idx_path: str | None = None):
    self.rec_path = rec_path
    self.idx_path = idx_path if idx_path is not None else os.path.splitext(rec_path)[0] + ".idx"
    self._index = read_index(self.idx_path)
    key_at_offset: dict[int, int] = {}
    for key, offset in self._index.items():
      if offset in key_at_offset:
        raise RecordIOError(f"{self.idx_path} disagrees with {self.rec_path}: keys "
                            f"{key_at_offset[offset]} and {key} both point at offset {offset}")
      key_at_offset[offset] = key
    self._keys = sorted(self._index)
    self._file = open(rec_path, "rb")
    self._size = os.fstat(self._file.fileno()).st_size
    self._lock = threading.Lock()

  @property
  def keys(self) -> list[int]:
    """Every key of the index, sorted."""
    return list(self._keys)

  @property
  def index(self) -> dict[int, int]:
    return dict(self._index)

  def __len__(self) -> int:
    return len(self._keys)

  def __contains__(self, key) -> bool:
    return key in self._index

  def close(self) -> None:
    self._file.close()

  def __enter__(self) -> RecordIOReader:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def _where(self, key: int | None, offset: int) -> str:
    if key is None:
      return f"{self.rec_path}, offset {offset}"
    return f"{self.rec_path} (index {self.idx_path}), key {key} at offset {offset}"

  def _pread(self, position: int, size: int) -> bytes:
    with self._lock:
      self._file.seek(position)
      return self._file.read(size)

  def _walk(self, offset: int, key: int | None, with_data: bool) -> tuple[list[bytes], int]:
    """The data chunks of the record at `offset` (if with_data) and the offset just past it."""
    where = self._where(key, offset)
    if offset >= self._size:
      raise RecordIOError(f"{where}: offset lies beyond the end of the file ({self._size} bytes)")
    if offset % 4:
      raise RecordIOError(f"{where}: offset is not a record start (records start at multiples of 4)")
    chunks, position = [], offset
    while True:
      head = self._pread(position, _CHUNK_HEAD.size)
      if len(head) < _CHUNK_HEAD.size:
        raise RecordIOError(f"{where}: file truncated, it ends at byte {self._size} inside the "
                            f"chunk header at byte {position}")
      magic, lrecord = _CHUNK_HEAD.unpack(head)
      if magic != MAGIC:
        if position == offset:
          raise RecordIOError(f"{where}: no record starts there (found 0x{magic:08x} where the "
                              f"magic 0x{MAGIC:08x} should be)")
        raise RecordIOError(f"{where}: the split record's next chunk at byte {position} lacks the "
                            f"magic (found 0x{magic:08x})")
      flag, length = lrecord >> _LENGTH_BITS, lrecord & _LENGTH_MASK
      if flag > LAST:
        raise RecordIOError(f"{where}: invalid chunk flag {flag} at byte {position}")
      if position == offset and flag in (MIDDLE, LAST):
        raise RecordIOError(f"{where}: offset points into the middle of a split record "
                            f"(chunk flag {flag}), not at a record start")
      if position != offset and flag in (WHOLE, FIRST):
        raise RecordIOError(f"{where}: split record is cut short: the chunk at byte {position} "
                            f"starts a new record (chunk flag {flag})")
      data_start = position + _CHUNK_HEAD.size
      position = data_start + _padded(length)
      if position > self._size:
        raise RecordIOError(f"{where}: file truncated, the chunk at byte {data_start - 8} needs "
                            f"{length} data bytes but the file ends at byte {self._size}")
      if with_data:
        chunks.append(self._pread(data_start, length))
      if flag in (WHOLE, LAST):
        return chunks, position

  def read_at(self, offset: int) -> bytes:
    """The payload of the record starting at byte `offset` (split records rejoined)."""
    chunks, _ = self._walk(int(offset), None, with_data=True)
    return _MAGIC_BYTES.join(chunks)

  def read(self, key: int) -> bytes:
    """The payload of the record the index gives for `key`."""
    if key not in self._index:
      raise RecordIOError(f"{self.idx_path}: key {key} is not in the index of {self.rec_path}")
    chunks, _ = self._walk(self._index[key], key, with_data=True)
    return _MAGIC_BYTES.join(chunks)

  def validate(self) -> int:
    """Checks every index entry against the .rec without reading payloads; returns the count.

    Each offset must hold a record start inside the file, each record must be complete, and no
    record may run into the next indexed one.
    """
    entries = sorted((offset, key) for key, offset in self._index.items())
    for position, (offset, key) in enumerate(entries):
      _, end = self._walk(offset, key, with_data=False)
      if position + 1 < len(entries) and end > entries[position + 1][0]:
        next_offset, next_key = entries[position + 1]
        raise RecordIOError(f"{self._where(key, offset)}: the record runs to byte {end}, past the "
                            f"start of key {next_key}'s record at offset {next_offset}")
    return len(entries)


def unpack_header(record: bytes) -> tuple[IRHeader, bytes]:
  """Splits an image record into its IRHeader and the encoded image (as mx.recordio.unpack)."""
  if len(record) < IR_HEADER_SIZE:
    raise RecordIOError(f"record of {len(record)} bytes is shorter than the {IR_HEADER_SIZE}-byte "
                        "image header")
  flag, label, record_id, record_id2 = _IR_HEADER.unpack_from(record)
  rest = memoryview(record)[IR_HEADER_SIZE:]
  if flag > 0:
    if len(rest) < 4 * flag:
      raise RecordIOError(f"image header says {flag} float32 labels follow but only {len(rest)} "
                          "bytes remain")
    label = np.frombuffer(rest, dtype="<f4", count=flag).astype(np.float32)
    rest = rest[4 * flag:]
  return IRHeader(flag, label, record_id, record_id2), bytes(rest)


def pack_header(header: IRHeader | tuple, payload: bytes) -> bytes:
  """IRHeader + payload as mx.recordio.pack: a number label sets flag 0, an array sets flag = size."""
  header = IRHeader(*header)
  if isinstance(header.label, numbers.Number):
    flag, label_value, labels = 0, float(header.label), b""
  else:
    label_array = np.asarray(header.label, dtype="<f4").ravel()
    if label_array.size == 0:
      raise ValueError("an array label needs at least one value")
    flag, label_value, labels = label_array.size, 0.0, label_array.tobytes()
  return _IR_HEADER.pack(flag, label_value, header.id, header.id2) + labels + bytes(payload)


def _integer(value, what: str) -> int:
  value = float(value)
  if not (value.is_integer() and value >= 0):
    raise RecordIOError(f"{what} is {value}, expected a non-negative integer")
  return int(value)


def image_keys(reader: RecordIOReader) -> list[int]:
  """Image keys: 1 .. label[0]-1 when key 0 is InsightFace's header record, else every key."""
  if 0 not in reader:
    return reader.keys
  where = f"{reader.rec_path} (index {reader.idx_path}), key 0"
  record = reader.read(0)
  try:
    header, image = unpack_header(record)
  except RecordIOError as error:
    raise RecordIOError(f"{where}: {error}") from None
  if header.flag == 0 or image:
    return reader.keys  # key 0 is an ordinary image
  if header.flag < 2:
    raise RecordIOError(f"{where}: header record has {header.flag} label, expected 2 "
                        "(first identity key, end of identity keys)")
  first_identity = _integer(header.label[0], f"{where}: header label[0]")
  identities_end = _integer(header.label[1], f"{where}: header label[1]")
  if first_identity < 1 or identities_end < first_identity:
    raise RecordIOError(f"{where}: header labels [{first_identity}, {identities_end}] are not "
                        "first identity key >= 1 <= end of identity keys")
  keys = list(range(1, first_identity))
  missing = [key for key in keys if key not in reader]
  if missing:
    shown = ", ".join(map(str, missing[:10])) + (f" ... and {len(missing) - 10} more"
                                                  if len(missing) > 10 else "")
    raise RecordIOError(f"{reader.idx_path} disagrees with {reader.rec_path}: the header record "
                        f"announces image keys 1..{first_identity - 1} but {len(missing)} are "
                        f"missing from the index: {shown}")
  return keys


def iter_insightface(rec_path: str, idx_path: str | None = None) -> Iterator[tuple[int, int, bytes]]:
  """(key, integer label, encoded image) for every image record, in key order.

  Honours InsightFace's header record at key 0 (flag > 0, no image); without one every key is an
  image. A record whose label is an array (face2rec's [label, aligned]) yields label[0].
  """
  with RecordIOReader(rec_path, idx_path) as reader:
    for key in image_keys(reader):
      label, image = read_image_record(reader, key)
      yield key, label, image


def read_image_record(reader: RecordIOReader, key: int) -> tuple[int, bytes]:
  """(integer label, encoded image) of one image record; label[0] for an array label."""
  where = f"{reader.rec_path} (index {reader.idx_path}), key {key}"
  try:
    header, image = unpack_header(reader.read(key))
  except RecordIOError as error:
    raise RecordIOError(f"{where}: {error}") from None
  label = header.label if header.flag == 0 else header.label[0]
  return _integer(label, f"{where}: label"), image


def _check_label(label, sample_number: int) -> int:
  if isinstance(label, (bool, np.bool_)) or not isinstance(label, (numbers.Integral, np.integer)):
    raise ValueError(f"sample {sample_number}: label must be an integer, got {label!r}")
  if not 0 <= label < _MAX_EXACT_FLOAT32_INT:
    raise ValueError(f"sample {sample_number}: label {label} is outside [0, 2**24) (labels are "
                     "stored as float32)")
  return int(label)


def write_insightface(rec_path: str, samples: Iterable[tuple[int, bytes]], with_header: bool = True,
                      idx_path: str | None = None) -> int:
  """Writes (label, encoded image) samples as an InsightFace .rec + .idx; returns the image count.

  with_header: InsightFace's face2rec layout. Images get keys 1..N (IRHeader flag 0, label, id =
  key) and are written first, then the header record key 0 (label [N+1, N+1+C]) and one record
  per identity, keys N+1..N+C, label [start, end) of its image keys, in order of appearance.
  Samples must then come grouped by label. Without header: images get keys 0..N-1, in any order.
  Payloads holding the magic word are split as MXNet does. Files are replaced atomically.
  """
  idx_path = idx_path if idx_path is not None else os.path.splitext(rec_path)[0] + ".idx"
  first_key = 1 if with_header else 0
  identity_ranges: list[tuple[int, int]] = []
  finished_labels: set[int] = set()
  current_label = None
  key = first_key
  rec_temp, idx_temp = rec_path + ".partial", idx_path + ".partial"
  try:
    with open(rec_temp, "wb") as rec_file, open(idx_temp, "w", encoding="ascii") as idx_file:

      def write(record_key: int, payload: bytes) -> None:
        idx_file.write(f"{record_key}\t{rec_file.tell()}\n")
        rec_file.write(encode_record(payload))

      for sample_number, (label, image) in enumerate(samples):
        label = _check_label(label, sample_number)
        if with_header and label != current_label:
          if label in finished_labels:
            raise ValueError(f"sample {sample_number}: label {label} appeared before another label; "
                             "with_header=True needs the samples grouped by label (sort them)")
          if current_label is not None:
            finished_labels.add(current_label)
            identity_ranges[-1] = (identity_ranges[-1][0], key)
          identity_ranges.append((key, key))
          current_label = label
        write(key, pack_header(IRHeader(0, float(label), key, 0), image))
        key += 1
      num_images = key - first_key
      if with_header:
        if identity_ranges:
          identity_ranges[-1] = (identity_ranges[-1][0], key)
        identities_end = key + len(identity_ranges)
        if identities_end >= _MAX_EXACT_FLOAT32_INT:
          raise ValueError(f"{num_images} images and {len(identity_ranges)} identities need keys up "
                           "to 2**24, beyond what the float32 header can hold exactly")
        write(0, pack_header(IRHeader(2, [key, identities_end], 0, 0), b""))
        for identity_key, (start, end) in enumerate(identity_ranges, start=key):
          write(identity_key, pack_header(IRHeader(2, [start, end], identity_key, 0), b""))
    os.replace(rec_temp, rec_path)
    os.replace(idx_temp, idx_path)
  finally:
    for leftover in (rec_temp, idx_temp):
      if os.path.exists(leftover):
        os.remove(leftover)
  logging.info("wrote %d images%s to %s", num_images,
               f" of {len(identity_ranges)} identities" if with_header else "", rec_path)
  return num_images
