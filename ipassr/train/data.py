"""Training data: patches from the memory-mapped patch file, augmented by a resumable plan.

Every random choice of an epoch (the order of the patches, each patch's flips and crop position)
is drawn up front from a generator seeded by (seed, epoch): the data a step sees depends only on
the seed, the epoch and the step, not on the number of loader workers or processes, and a run
resumed in the middle of an epoch sees exactly what an uninterrupted run would have seen.
``EpochBatches`` plays the role of a DistributedSampler: with K processes, process r takes the
r-th slice of every global batch, so the K local batches together are the single-process batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import IpassrError
from ..data.io import PathLike
from .interrupts import ignore_interrupts

# (patch index, hflip, vflip, crop top, crop left, channel order: an index into CHANNEL_ORDERS)
Item = tuple[int, bool, bool, int, int, int]
# NAFSSR's RGB channel shuffle (BasicSR's flip_RGB): the same order for every view of a sample
CHANNEL_ORDERS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


class PatchSource(Protocol):
    """What training reads patches from: ``ipassr.data.patches.PatchFile`` or ``ArrayPatches``."""

    scale: int

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...


class ArrayPatches:
    """In-memory patches of any size: uint8 NHWC arrays lr_left, lr_right (N,h,w,3), hr_* (N,sh,sw,3)."""

    def __init__(self, lr_left: np.ndarray, lr_right: np.ndarray, hr_left: np.ndarray,
                 hr_right: np.ndarray, scale: int, name: str = "arrays") -> None:
        self.arrays = tuple(np.ascontiguousarray(a, dtype=np.uint8)
                            for a in (lr_left, lr_right, hr_left, hr_right))
        self.scale = int(scale)
        self.path = Path(name)
        lr, hr = self.arrays[0].shape, self.arrays[2].shape
        if (self.arrays[1].shape != lr or self.arrays[3].shape != hr or len(lr) != 4
                or hr != (lr[0], lr[1] * scale, lr[2] * scale, lr[3])):
            raise IpassrError(f"{name}: patch arrays of shapes {[a.shape for a in self.arrays]} "
                              f"do not fit scale {scale}")

    def __len__(self) -> int:
        return self.arrays[0].shape[0]

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return tuple(a[index] for a in self.arrays)  # type: ignore[return-value]


def open_patches(path: PathLike) -> PatchSource:
    """Open a patch file written by ``ipassr prepare patches`` (memory-mapped)."""
    from ..data.patches import PatchFile

    source = PatchFile(path)
    if len(source) == 0:
        raise IpassrError(f"{path}: the patch file holds no patches")
    return source


def patch_shape(source: PatchSource) -> tuple[int, int]:
    """(h, w) of the LR patches of ``source``."""
    return tuple(source[0][0].shape[:2])  # type: ignore[return-value]


def motorcycle_patches(scale: int) -> ArrayPatches:
    """Training patches cut from scikit-image's Middlebury Motorcycle pair (smoke runs without data)."""
    from ..data.datasets import stereo_motorcycle
    from ..data.patches import extract_patches

    left, right, _ = stereo_motorcycle("pass --patches FILE (the smoke preset uses it otherwise)")
    return ArrayPatches(*extract_patches(left, right, scale), scale=scale, name="skimage:motorcycle")


@dataclass(frozen=True)
class Augmentation:
    """What an epoch plan draws: the flips, the crop size (h, w) of the LR patch (None: whole
    patch) and a random channel order (NAFSSR's RGB shuffle)."""

    hflip: bool = True
    vflip: bool = True
    crop: tuple[int, int] | None = None
    channel_shuffle: bool = False


def epoch_plan(length: int, patch_hw: tuple[int, int], augmentation: Augmentation, seed: int,
               epoch: int) -> list[Item]:
    """Every sample of one epoch in order: (index, hflip, vflip, top, left, channel order), from
    (seed, epoch); each choice is drawn after those before it, so adding one changed none."""
    generator = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2 ** 63))
    order = torch.randperm(length, generator=generator)
    hflips = torch.rand(length, generator=generator) < 0.5
    vflips = torch.rand(length, generator=generator) < 0.5
    crop_h, crop_w = augmentation.crop or patch_hw
    tops = torch.randint(0, patch_hw[0] - crop_h + 1, (length,), generator=generator)
    lefts = torch.randint(0, patch_hw[1] - crop_w + 1, (length,), generator=generator)
    orders = torch.randint(0, len(CHANNEL_ORDERS), (length,), generator=generator)
    return [(int(i), bool(h) and augmentation.hflip, bool(v) and augmentation.vflip, int(t), int(l),
             int(c) if augmentation.channel_shuffle else 0)
            for i, h, v, t, l, c in zip(order, hflips, vflips, tops, lefts, orders)]


class EpochBatches:
    """Batch sampler of one epoch for one process: its share of each global batch, from a start step.

    Drops the last incomplete global batch (as the reference's ``drop_last=True``).
    """

    def __init__(self, plan: list[Item], global_batch: int, rank: int = 0, world_size: int = 1,
                 start_step: int = 0) -> None:
        if global_batch % world_size:
            raise IpassrError(f"batch size {global_batch} cannot be split evenly over "
                              f"{world_size} processes")
        self.plan, self.global_batch = plan, global_batch
        self.local_batch = global_batch // world_size
        self.rank, self.start_step = rank, start_step

    def __len__(self) -> int:
        return max(0, len(self.plan) // self.global_batch - self.start_step)

    def __iter__(self) -> Iterator[list[Item]]:
        for step in range(self.start_step, self.start_step + len(self)):
            first = step * self.global_batch + self.rank * self.local_batch
            yield self.plan[first:first + self.local_batch]


class PatchDataset(Dataset):
    """Reads one augmented patch per item; returns uint8 tensors lr_l, lr_r (h,w,3), hr_l, hr_r (sh,sw,3).

    A horizontal flip mirrors both views and swaps them (the mirrored right view is the left
    view of a valid pair: iPASSR's and NAFSSR's flips), or with ``hflip_swap=False`` only mirrors
    them (PASSRnet's official flips). Holds the patch file's path rather than its memory map, so
    worker processes open their own.
    """

    def __init__(self, source: PatchSource, crop: tuple[int, int] | None = None,
                 replicate_left: bool = False, hints: bool = False, hflip_swap: bool = True) -> None:
        self.scale = source.scale
        self.crop = crop
        self.replicate_left = replicate_left
        self.hflip_swap = hflip_swap
        self.hints = hints  # also return the patch's disparity hints (2, h, w) float32, augmented alike
        self._source: PatchSource | None = source
        self._path = getattr(source, "path", None) if not isinstance(source, ArrayPatches) else None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self._path is not None:
            state["_source"] = None  # reopened (memory-mapped) in the worker
        return state

    def source(self) -> PatchSource:
        if self._source is None:
            self._source = open_patches(self._path)
        return self._source

    def __len__(self) -> int:
        return len(self.source())

    def __getitem__(self, item: Item) -> tuple[torch.Tensor, ...]:
        index, hflip, vflip, top, left = item[:5]
        channels = CHANNEL_ORDERS[item[5] if len(item) > 5 else 0]
        lr_l, lr_r, hr_l, hr_r = self.source()[index]
        hints = self.source().hints(index) if self.hints else None  # (2, h, w): left, right view
        if self.replicate_left:  # Table 1 "replicated inputs": Left-Left pairs
            lr_r, hr_r = lr_l, hr_l
        if self.crop is not None:
            s, (h, w) = self.scale, self.crop
            lr_l, lr_r = (v[top:top + h, left:left + w] for v in (lr_l, lr_r))
            hr_l, hr_r = (v[top * s:(top + h) * s, left * s:(left + w) * s] for v in (hr_l, hr_r))
            hints = None if hints is None else hints[:, top:top + h, left:left + w]
        if hflip and self.hflip_swap:  # mirror the scene: the mirrored right view becomes the left
            lr_l, lr_r = lr_r[:, ::-1], lr_l[:, ::-1]
            hr_l, hr_r = hr_r[:, ::-1], hr_l[:, ::-1]
            hints = None if hints is None else hints[::-1, :, ::-1]  # disparities stay positive
        elif hflip:
            lr_l, lr_r, hr_l, hr_r = (v[:, ::-1] for v in (lr_l, lr_r, hr_l, hr_r))
        if vflip:
            lr_l, lr_r, hr_l, hr_r = (v[::-1] for v in (lr_l, lr_r, hr_l, hr_r))
            hints = None if hints is None else hints[:, ::-1]
        if channels != CHANNEL_ORDERS[0]:
            lr_l, lr_r, hr_l, hr_r = (v[..., channels] for v in (lr_l, lr_r, hr_l, hr_r))
        views = (lr_l, lr_r, hr_l, hr_r) + (() if hints is None else (hints,))
        return tuple(torch.from_numpy(np.ascontiguousarray(v)) for v in views)


def make_loader(dataset: PatchDataset, batches: EpochBatches, workers: int, pin_memory: bool
                ) -> DataLoader:
    """DataLoader over one epoch's batches; the default collate stacks to (B, h, w, 3) uint8."""
    return DataLoader(dataset, batch_sampler=batches, num_workers=workers, pin_memory=pin_memory,
                      prefetch_factor=4 if workers else None,
                      worker_init_fn=ignore_interrupts if workers else None)


def to_inputs(batch: tuple[torch.Tensor, ...], device: torch.device,
              channels_last: bool = False) -> tuple[torch.Tensor, ...]:
    """uint8 (B, h, w, 3) x4 -> float32 (B, 3, h, w) in [0, 1] on ``device`` (converted there);
    a fifth element (disparity hints, float32) is moved as it is."""
    if len(batch) > 4:
        return to_inputs(batch[:4], device, channels_last) + (batch[4].to(device, non_blocking=True),)
    out = []
    for view in batch:
        view = view.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        out.append(view.contiguous(memory_format=torch.channels_last if channels_last
                                   else torch.contiguous_format))
    return tuple(out)
