"""MP4/MOV boxes: the one ipassr writes itself, ``st3d``, the stereo layout of Google's Spherical
Video V2 specification, which FFmpeg reads but PyAV gives no way to make FFmpeg write; and a
check for a file cut short.

The box goes at the end of the video sample entry (``moov/trak/mdia/minf/stbl/stsd/<entry>``),
and every box around it grows by its size. FFmpeg's MP4 muxer writes ``moov`` last, after the
media data, so only ``moov`` is rewritten and no chunk offset moves; a file with ``moov`` first
is left as it is.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO, Iterator

_PARENTS = (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd")
_STSD_HEADER = 8 + 8  # box header + version/flags + entry count


def _boxes(data: bytes | bytearray, start: int, end: int) -> Iterator[tuple[int, int, bytes]]:
    """(offset, size, type) of the boxes in data[start:end]."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        if size == 1:
            size = struct.unpack_from(">Q", data, pos + 8)[0]
        elif size == 0:
            size = end - pos
        if size < 8:
            return
        yield pos, size, kind
        pos += size


def _top_level(file: BinaryIO) -> list[tuple[int, int, bytes]]:
    """(offset, size, type) of a file's top-level boxes, reading only their headers."""
    file.seek(0, 2)
    end, pos, boxes = file.tell(), 0, []
    while pos + 8 <= end:
        file.seek(pos)
        head = file.read(16)
        size, kind = struct.unpack_from(">I4s", head)
        size = struct.unpack_from(">Q", head, 8)[0] if size == 1 else (end - pos if size == 0 else size)
        if size < 8:
            break
        boxes.append((pos, size, kind))
        pos += size
    return boxes


def cut_short(path: Path) -> bool:
    """Whether an MP4/MOV file (one that starts with an ``ftyp`` box) ends inside a box: a
    truncated file, whose damaged ``moov`` FFmpeg may still half read."""
    with open(path, "rb") as file:
        boxes = _top_level(file)
        size = file.seek(0, 2)
    return bool(boxes) and boxes[0][2] == b"ftyp" and boxes[-1][0] + boxes[-1][1] > size


def _video_sample_entry(moov: bytearray) -> tuple[list[int], int] | None:
    """(offsets of the boxes around it, end of the entry) of the first video track's sample
    entry inside a ``moov`` box, or None when there is none."""
    for trak in (b for b in _boxes(moov, 8, len(moov)) if b[2] == b"trak"):
        found = _descend(moov, [0, trak[0]], trak, _PARENTS[2:])
        if found is not None:
            return found
    return None


def _descend(data: bytearray, path: list[int], box: tuple[int, int, bytes],
             names: tuple[bytes, ...]) -> tuple[list[int], int] | None:
    pos, size, _ = box
    if not names:  # box is stsd: its first entry
        entry = pos + _STSD_HEADER
        return [*path, entry], entry + struct.unpack_from(">I", data, entry)[0]
    for child in _boxes(data, pos + 8, pos + size):
        if names[0] == b"minf" and child[2] == b"hdlr" and data[child[0] + 16:child[0] + 20] != b"vide":
            return None  # the media of an audio or other track
        if child[2] == names[0]:
            return _descend(data, [*path, child[0]], child, names[1:])
    return None


def add_st3d(path: Path, mode: int) -> bool:
    """Add an ``st3d`` box (mode 1 top-bottom, 2 side by side, left eye first) to the video
    track of an MP4/MOV file in place; False (file untouched) when ``moov`` is not the last box
    or holds no video track. Only ``moov`` is read and rewritten."""
    with open(path, "r+b") as file:
        top = _top_level(file)
        if not top or top[-1][2] != b"moov" or top[-1][1] >= 2 ** 32:
            return False
        offset, size, _ = top[-1]
        file.seek(offset)
        moov = bytearray(file.read(size))
        found = _video_sample_entry(moov)
        if found is None:
            return False
        parents, end = found
        if any(struct.unpack_from(">I", moov, p)[0] == 1 for p in parents):
            return False  # a 64-bit box size: never written by FFmpeg for these boxes
        box = struct.pack(">I4sIB", 13, b"st3d", 0, mode)
        moov[end:end] = box
        for p in parents:
            struct.pack_into(">I", moov, p, struct.unpack_from(">I", moov, p)[0] + len(box))
        file.seek(offset)
        file.write(moov)
    return True
