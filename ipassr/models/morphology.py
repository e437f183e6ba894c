"""PASSRnet's valid-mask morphology in tensor operations, for exported graphs (ONNX, TorchScript).

Inference cleans the mask with SciPy (``passrnet.clean_valid_mask``); an exported graph cannot
call SciPy, so this module does the same with operations TorchScript records, including a loop
whose count depends on the image: connected components by propagating the largest pixel index
through each component (max pools over the official connectivity, with pointer jumping) until
nothing changes, then each component's size. ``tests/test_zoo.py`` checks it against the SciPy
version, pixel for pixel.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

# the official cleaning, shared with ``passrnet.clean_valid_mask`` (SciPy)
SMALL_OBJECT = 20  # invalid regions under 20 pixels are dropped (remove_small_objects)
SMALL_HOLE = 10  # valid regions under 10 pixels become invalid (remove_small_holes)
CLOSING_RADIUS = 3  # then a binary closing with disk(3)


def _grow(labels: torch.Tensor) -> torch.Tensor:
    """Each pixel's largest label among its neighbours under connectivity 2 of the 4-D
    (B, 1, H, W) array, ``labels`` being (B, H, W): the 3x3 square in its own image, and the
    pixel itself and its 4 neighbours (a plus) in the images before and after it in the batch."""
    square = F.max_pool2d(labels[:, None], 3, 1, 1)[:, 0]
    plus = torch.maximum(F.max_pool2d(labels[:, None], (3, 1), 1, (1, 0)),
                         F.max_pool2d(labels[:, None], (1, 3), 1, (0, 1)))[:, 0]
    before = F.pad(plus[:-1], [0, 0, 0, 0, 1, 0])  # image b sees b - 1
    after = F.pad(plus[1:], [0, 0, 0, 0, 0, 1])  # and b + 1
    return torch.maximum(square, torch.maximum(before, after))


def component_labels(mask: torch.Tensor) -> torch.Tensor:
    """(B, H, W) bool -> float64 (B, H, W): each connected component of ``mask`` (connectivity 2
    over the (B, 1, H, W) array, as the official code labels it) labelled by its largest 1-based
    pixel index, 0 outside the mask."""
    index = torch.arange(1, mask.numel() + 1, dtype=torch.float64).view(mask.shape)
    zeros = torch.zeros_like(index)
    labels = torch.where(mask, index, zeros)
    changed = True
    while changed:
        grown = torch.where(mask, _grow(labels), zeros)
        # pointer jumping: take the label of the pixel one's label names (same component), so a
        # large label crosses a long component in far fewer steps than one pixel per step
        jumped = grown.flatten()[(grown.long() - 1).clamp(min=0).flatten()].view_as(grown)
        grown = torch.where(mask, torch.maximum(grown, jumped), zeros)
        changed = bool((grown != labels).any())
        labels = grown
    return labels


def drop_small_components(mask: torch.Tensor, minimum: int) -> torch.Tensor:
    """``mask`` (B, H, W) bool without its components of fewer than ``minimum`` pixels."""
    labels = component_labels(mask).long().flatten()
    sizes = torch.zeros(mask.numel() + 1, dtype=torch.long).scatter_add_(
        0, labels, torch.ones_like(labels))
    small = (sizes < minimum)[labels].view(mask.shape)
    return mask & ~small


def disk(radius: int) -> torch.Tensor:
    """The (2r+1, 2r+1) bool disk of scikit-image's ``disk(radius)``: x^2 + y^2 <= r^2."""
    offsets = torch.arange(-radius, radius + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2) <= radius * radius


def close_with_disk(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary closing of each (H, W) image of ``mask`` (B, H, W) with a disk, on the image
    zero-padded by ``radius`` (the dilation sees zeros outside, the erosion ones), cropped back:
    as the official code does, image by image."""
    kernel = disk(radius).float()[None, None]
    padded = F.pad(mask.float(), [radius, radius, radius, radius])[:, None]
    dilated = F.conv2d(padded, kernel, padding=radius) > 0
    holes = F.conv2d((~dilated).float(), kernel, padding=radius)  # zeros outside: border value 1
    closed = (holes == 0)[:, 0]
    return closed[:, radius:closed.shape[1] - radius, radius:closed.shape[2] - radius]


def clean_valid_masks_graph(valid: torch.Tensor, small_object: int = SMALL_OBJECT,
                            small_hole: int = SMALL_HOLE, radius: int = CLOSING_RADIUS
                            ) -> torch.Tensor:
    """``passrnet.clean_valid_mask`` in tensor operations: bool (B, 1, H, W) -> float, the
    pairs of a batch labelled together as the official code does (``ipassr`` itself runs
    PASSRnet one pair at a time)."""
    invalid = ~valid[:, 0]
    invalid = drop_small_components(invalid, small_object)
    invalid = ~drop_small_components(~invalid, small_hole)
    invalid = close_with_disk(invalid, radius)
    return (~invalid).float()[:, None]


@functools.lru_cache(maxsize=None)
def scripted_cleaner():
    """``clean_valid_masks_graph`` compiled by TorchScript (once): a traced graph calls it with
    its loops intact, where tracing the Python function would fix the iteration counts."""
    return torch.jit.script(clean_valid_masks_graph)


__all__ = ["SMALL_OBJECT", "SMALL_HOLE", "CLOSING_RADIUS", "disk", "component_labels",
           "drop_small_components", "close_with_disk",
           "clean_valid_masks_graph", "scripted_cleaner"]
