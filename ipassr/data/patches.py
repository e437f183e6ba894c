"""The paper's training patches and the single-file patch format that holds them.

Extraction (paper Sec. 4.1, as the reference code generates its data): HR is mod-cropped to a multiple of s (Middlebury sources are first
shrunk by 2 with the same MATLAB bicubic), LR = MATLAB ``imresize(HR, 1/s)``; on the LR image,
30 x 90 patches with stride 20 start at 0-based offset 2 in both directions while the start row is
<= H_lr - 34 and the start column <= W_lr - 94 (the reference's 1-based ``3:20:H-33``,
``3:20:W-93``); the HR patch is the matching s-times region.

File format (a plain ``.safetensors`` file, readable by the ``safetensors`` library too): four
uint8 NHWC tensors ``lr_left``, ``lr_right`` (N, 30, 90, 3) and ``hr_left``, ``hr_right``
(N, 30s, 90s, 3), stored in that order, and string metadata ``format = "ipassr-patches"``,
``version = "1"``, ``scale``, ``lr_patch_height = "30"``, ``lr_patch_width = "90"`` and ``sources``
(a JSON object: source name -> patch count). Optionally (``prepare patches --hints``, not in the
paper) a fifth tensor ``hints``, float16 (N, 2, 30, 90): the SGBM disparity of each LR pixel of the
left and the right view in LR pixels, NaN where unknown (``ipassr.data.hints``), and metadata
``hints = "sgbm"``. ``PatchFile`` memory-maps it; the writer streams one image pair at a time into
place, so memory holds one pair's patches, never the whole set.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .datasets import PairFiles, StereoDataset, probe_image
from ..errors import IpassrError
from .hints import pair_hints
from .io import PathLike, atomic_path
from .resize import degrade, imresize, mod_crop, output_size

__all__ = ["PatchJob", "plan_patches", "PATCH_HEIGHT", "PATCH_WIDTH", "STRIDE", "patch_origins", "extract_patches", "prepare_pair",
           "PatchFile", "write_patch_file", "TENSOR_NAMES", "HINTS_NAME", "FORMAT_NAME"]

PATCH_HEIGHT, PATCH_WIDTH, STRIDE, START = 30, 90, 20, 2
_LAST_ROW_GAP, _LAST_COL_GAP = 34, 94      # 0-based last start <= H - 34 / W - 94
FORMAT_NAME, FORMAT_VERSION = "ipassr-patches", "1"
TENSOR_NAMES = ("lr_left", "lr_right", "hr_left", "hr_right")
HINTS_NAME = "hints"  # the optional fifth tensor
_DTYPES = {"U8": np.uint8, "F16": np.float16}
_MAX_HEADER = 100 * 1024 * 1024


def patch_origins(lr_height: int, lr_width: int) -> tuple[np.ndarray, np.ndarray]:
    """0-based start rows and start columns of the LR patches of an (lr_height, lr_width) image."""
    rows = np.arange(START, lr_height - _LAST_ROW_GAP + 1, STRIDE)
    cols = np.arange(START, lr_width - _LAST_COL_GAP + 1, STRIDE)
    return rows, cols


def _hr_size(width: int, height: int, scale: int, middlebury: bool) -> tuple[int, int]:
    """(H, W) of the HR image after the optional Middlebury shrink by 2 and the mod-crop to ``scale``."""
    if middlebury:
        height, width = output_size(height, 0.5), output_size(width, 0.5)
    return height // scale * scale, width // scale * scale


def count_patches(width: int, height: int, scale: int, middlebury: bool) -> int:
    """Number of patches a (width x height) source image gives, without reading its pixels."""
    hr_h, hr_w = _hr_size(width, height, scale, middlebury)
    rows, cols = patch_origins(hr_h // scale, hr_w // scale)
    return rows.size * cols.size


def prepare_pair(left: np.ndarray, right: np.ndarray, scale: int, middlebury: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """HR (mod-cropped, Middlebury first shrunk by 2) and MATLAB-bicubic LR of both views (uint8 HWC)."""
    views = []
    for view in (left, right):
        if middlebury:
            view = imresize(view, 0.5)
        hr = mod_crop(view, scale)
        views.append((hr, degrade(hr, scale)))
    (hr_left, lr_left), (hr_right, lr_right) = views
    return hr_left, hr_right, lr_left, lr_right


def _cut(image: np.ndarray, rows: np.ndarray, cols: np.ndarray, height: int, width: int) -> np.ndarray:
    """Patches (len(rows) * len(cols), height, width, C) starting at every (row, col), row-major."""
    if rows.size == 0 or cols.size == 0:
        return np.zeros((0, height, width, image.shape[2]), dtype=image.dtype)
    windows = np.lib.stride_tricks.sliding_window_view(image, (height, width), axis=(0, 1))
    picked = windows[rows][:, cols]                                # (nr, nc, C, height, width)
    return np.ascontiguousarray(picked.transpose(0, 1, 3, 4, 2).reshape(-1, height, width, image.shape[2]))


def extract_patches(left: np.ndarray, right: np.ndarray, scale: int, middlebury: bool = False,
                    hints: bool = False) -> tuple[np.ndarray, ...]:
    """Training patches of one HR pair: lr_left, lr_right (N, 30, 90, 3), hr_left, hr_right (N, 30s, 90s, 3),
    and with ``hints`` a fifth array (N, 2, 30, 90) float16: SGBM's LR disparities of both views."""
    hr_left, hr_right, lr_left, lr_right = prepare_pair(left, right, scale, middlebury)
    rows, cols = patch_origins(*lr_left.shape[:2])
    lr = [_cut(v, rows, cols, PATCH_HEIGHT, PATCH_WIDTH) for v in (lr_left, lr_right)]
    hr = [_cut(v, rows * scale, cols * scale, PATCH_HEIGHT * scale, PATCH_WIDTH * scale)
          for v in (hr_left, hr_right)]
    if not hints:
        return lr[0], lr[1], hr[0], hr[1]
    lr_hints = pair_hints(hr_left, hr_right, scale).transpose(1, 2, 0)  # (h, w, 2)
    cut = _cut(lr_hints, rows, cols, PATCH_HEIGHT, PATCH_WIDTH).transpose(0, 3, 1, 2)
    return lr[0], lr[1], hr[0], hr[1], np.ascontiguousarray(cut, dtype=np.float16)


def _tensor_shapes(count: int, scale: int, hints: bool = False) -> dict[str, tuple[int, ...]]:
    """Shapes of the four (five, with hints) tensors of a file holding ``count`` patches at ``scale``."""
    lr = (count, PATCH_HEIGHT, PATCH_WIDTH, 3)
    hr = (count, PATCH_HEIGHT * scale, PATCH_WIDTH * scale, 3)
    shapes = {"lr_left": lr, "lr_right": lr, "hr_left": hr, "hr_right": hr}
    if hints:
        shapes[HINTS_NAME] = (count, 2, PATCH_HEIGHT, PATCH_WIDTH)
    return shapes


def _tensor_dtype(name: str) -> str:
    """safetensors dtype of a tensor of the patch format."""
    return "F16" if name == HINTS_NAME else "U8"


def _itemsize(name: str) -> int:
    """Bytes per element of a tensor of the patch format."""
    return np.dtype(_DTYPES[_tensor_dtype(name)]).itemsize


def _header_bytes(count: int, scale: int, sources: dict[str, int], hints: bool = False
                  ) -> tuple[bytes, dict[str, int]]:
    """safetensors header (8-byte length + JSON padded to 8 bytes) and each tensor's data offset."""
    metadata = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "scale": str(scale),
                "lr_patch_height": str(PATCH_HEIGHT), "lr_patch_width": str(PATCH_WIDTH),
                "sources": json.dumps(sources)}
    if hints:
        metadata["hints"] = "sgbm"
    header: dict[str, object] = {"__metadata__": metadata}
    offsets, position = {}, 0
    for name, shape in _tensor_shapes(count, scale, hints).items():
        size = math.prod(shape) * _itemsize(name)
        header[name] = {"dtype": _tensor_dtype(name), "shape": list(shape),
                        "data_offsets": [position, position + size]}
        offsets[name] = position
        position += size
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text, offsets


@dataclass(frozen=True)
class PatchJob:
    """One pair to cut into patches: its files, source name, Middlebury flag and planned count."""

    pair: PairFiles
    source: str
    middlebury: bool
    count: int


def plan_patches(sources: Iterable[tuple[str, StereoDataset, bool]], scale: int,
                 shrink_wider_than: int | None = None) -> list[PatchJob]:
    """Patch count of every pair of every (name, dataset, middlebury) source, from image headers only.

    ``shrink_wider_than``: also shrink by 2 (as Middlebury) every pair wider than this many pixels,
    so that large pairs' disparities fit the 90-column LR patches.
    """
    jobs = []
    for name, dataset, middlebury in sources:
        for pair in dataset.pairs:
            (width, height), _ = probe_image(pair.left)
            shrink = middlebury or (shrink_wider_than is not None and width > shrink_wider_than)
            jobs.append(PatchJob(pair, name, shrink, count_patches(width, height, scale, shrink)))
    return jobs


def write_patch_file(path: PathLike, jobs: list[PatchJob], scale: int,
                     read_pair: Callable[[PairFiles], tuple[np.ndarray, np.ndarray]],
                     progress: Callable[[PatchJob], None] | None = None,
                     hints: bool = False) -> dict[str, int]:
    """Write the patches of every planned pair into one .safetensors file (atomically); return counts.

    The file is laid out from the plan first, then each pair's patches are written in place, so only
    one pair's patches are ever in memory. ``hints``: also SGBM's disparities (``ipassr.data.hints``).
    """
    sources: dict[str, int] = {}
    for job in jobs:
        sources[job.source] = sources.get(job.source, 0) + job.count
    total = sum(sources.values())
    if total == 0:
        raise IpassrError("no training patches: every source image is too small for a 30x90 LR patch "
                          f"at scale {scale} (an LR image needs at least 64x124 pixels)")
    header, offsets = _header_bytes(total, scale, sources, hints)
    shapes = _tensor_shapes(total, scale, hints)
    sizes = {name: math.prod(shape[1:]) * _itemsize(name) for name, shape in shapes.items()}
    with atomic_path(path) as tmp, open(tmp, "r+b") as handle:
        handle.write(header)
        handle.truncate(len(header) + sum(sizes[n] * total for n in shapes))
        index = 0
        for job in jobs:
            if job.count:
                left, right = read_pair(job.pair)
                arrays = extract_patches(left, right, scale, job.middlebury, hints)
                if arrays[0].shape[0] != job.count:
                    raise IpassrError(f"{job.pair.left}: expected {job.count} patches, cut {arrays[0].shape[0]} "
                                      "(file changed while preparing?)")
                for name, array in zip(shapes, arrays):
                    handle.seek(len(header) + offsets[name] + index * sizes[name])
                    handle.write(array.tobytes())
                index += job.count
            if progress is not None:
                progress(job)
        handle.flush()
        os.fsync(handle.fileno())
    return sources


class PatchFile:
    """Memory-mapped reader of an ipassr patch file; ``pf[i] -> (lr_l, lr_r, hr_l, hr_r)`` uint8 HWC."""

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        header, data_start, file_size = self._read_header()
        meta = header.get("__metadata__")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise self._error(f"not an ipassr patch file (metadata format is "
                              f"{meta.get('format') if isinstance(meta, dict) else None!r}, "
                              f"expected '{FORMAT_NAME}')")
        if meta.get("version") != FORMAT_VERSION:
            raise self._error(f"unsupported patch file version {meta.get('version')!r} (this ipassr reads "
                              f"version {FORMAT_VERSION})")
        try:
            self.scale = int(meta["scale"])
            self.sources: dict[str, int] = json.loads(meta["sources"])
            patch_size = (int(meta["lr_patch_height"]), int(meta["lr_patch_width"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise self._error(f"bad metadata ({exc.__class__.__name__}: {exc})") from exc
        if self.scale < 1 or patch_size != (PATCH_HEIGHT, PATCH_WIDTH):
            raise self._error(f"bad metadata: scale {self.scale}, LR patch {patch_size}")
        self.has_hints = HINTS_NAME in header
        self._arrays = self._map_tensors(header, data_start, file_size)
        self._length = self._arrays["lr_left"].shape[0]
        if sum(self.sources.values()) != self._length:
            raise self._error(f"metadata counts {sum(self.sources.values())} patches but the file holds "
                              f"{self._length}")

    def _error(self, message: str) -> IpassrError:
        """IpassrError naming this file."""
        return IpassrError(f"{self.path}: {message}")

    def _read_header(self) -> tuple[dict, int, int]:
        """Parse the safetensors header; return (header dict, data start offset, file size)."""
        if not self.path.is_file():
            raise self._error("no such patch file")
        file_size = self.path.stat().st_size
        if file_size < 8:
            raise self._error("empty or truncated patch file" if file_size else "empty patch file")
        with open(self.path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > min(_MAX_HEADER, file_size - 8):
                raise self._error("corrupt or truncated patch file (bad header length)")
            raw = handle.read(length)
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise self._error("corrupt patch file (header is not valid JSON)") from exc
        if not isinstance(header, dict):
            raise self._error("corrupt patch file (header is not a JSON object)")
        return header, 8 + length, file_size

    def _map_tensors(self, header: dict, data_start: int, file_size: int) -> dict[str, np.ndarray]:
        """Memory-map the four tensors after checking dtype, shapes and that the data is all there."""
        arrays, count = {}, None
        for name in TENSOR_NAMES + ((HINTS_NAME,) if self.has_hints else ()):
            info = header.get(name)
            if not isinstance(info, dict):
                raise self._error(f"no tensor '{name}'")
            try:
                shape = tuple(int(v) for v in info.get("shape", ()))
                begin, end = (int(v) for v in info.get("data_offsets", (0, -1)))
            except (TypeError, ValueError) as exc:
                raise self._error(f"corrupt patch file (tensor '{name}' has a bad shape or offsets)") from exc
            count = shape[0] if count is None and shape else count
            expected = _tensor_shapes(count if count is not None else -1, self.scale, True)[name]
            dtype = _tensor_dtype(name)
            if info.get("dtype") != dtype or shape != expected:
                raise self._error(f"tensor '{name}' is {info.get('dtype')} {list(shape)}, expected {dtype} "
                                  f"{list(expected)}")
            if end - begin != math.prod(shape) * _itemsize(name) or data_start + end > file_size:
                raise self._error(f"truncated or corrupt patch file (tensor '{name}' data missing)")
            if count == 0:
                arrays[name] = np.zeros(shape, dtype=_DTYPES[dtype])
            else:
                arrays[name] = np.memmap(self.path, dtype=_DTYPES[dtype], mode="r", offset=data_start + begin,
                                         shape=shape)
        return arrays

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Patch ``index``: (lr_left, lr_right (30, 90, 3), hr_left, hr_right (30s, 90s, 3)), uint8 copies."""
        index = int(index)
        if not -self._length <= index < self._length:
            raise IndexError(f"patch {index} out of range (file holds {self._length})")
        return tuple(np.array(self._arrays[name][index]) for name in TENSOR_NAMES)  # type: ignore[return-value]

    def hints(self, index: int) -> np.ndarray:
        """Patch ``index``'s SGBM hints (2, 30, 90) float32, LR px, NaN where unknown; IpassrError
        when the file has none."""
        if not self.has_hints:
            raise self._error("holds no disparity hints (make it with `ipassr prepare patches --hints`)")
        return np.asarray(self._arrays[HINTS_NAME][int(index)], dtype=np.float32)

    def batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Several patches at once: four uint8 arrays (B, h, w, 3), in the order of ``indices``."""
        indices = np.asarray(indices, dtype=np.int64)
        return tuple(np.asarray(self._arrays[name][indices]) for name in TENSOR_NAMES)  # type: ignore[return-value]

    def __getstate__(self) -> dict:
        """Pickle by path only (DataLoader workers re-open the memory map instead of copying the data)."""
        return {"path": str(self.path)}

    def __setstate__(self, state: dict) -> None:
        """Re-open the file after unpickling."""
        self.__init__(state["path"])

    def __repr__(self) -> str:
        return f"PatchFile({str(self.path)!r}, patches={self._length}, scale={self.scale})"
