"""Reading and writing images safely.

Every image enters the library as an RGB ``uint8`` array of shape (H, W, 3), whatever its
file mode (grayscale, palette, RGBA, 16-bit), and every output file is written atomically
(temporary file + rename) so an interrupted run never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ImageReadError, IpassrError

if TYPE_CHECKING:  # torch only once images become tensors: the CLI parses without it
    import torch

PathLike = str | os.PathLike

_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def read_image(path: PathLike) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3); raise ImageReadError naming the file."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a directory, not an image")
    try:
        with Image.open(path) as image:
            image.load()
            return pil_to_rgb_array(image, name=str(path))
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{path}: {too_large(exc)}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({exc})") from exc


def too_large(exc: Exception) -> str:
    """Why Pillow refused an image whose header claims more pixels than it will decode."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = f"{int(found.group(1)) / 1e6:,.0f} megapixels" if found else "too many pixels"
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
    return (f"its header claims {pixels}, more than the {limit:,.0f} megapixels Pillow will "
            "decode (a damaged or hostile file?)")


def pil_to_rgb_array(image: Image.Image, name: str = "image") -> np.ndarray:
    """Convert a PIL image of any common mode to RGB uint8 (H, W, 3).

    16-bit images are scaled to 8 bits (not clipped); an alpha channel is dropped with a warning.
    """
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode != "I" or values.max(initial=0) > 255 else 255.0
        grey = np.clip(np.round(values * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "F":
        raise ImageReadError(f"{name}: floating-point images (mode F) are not supported")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        warnings.warn(f"{name}: alpha channel dropped", stacklevel=3)
        image = image.convert("RGBA").convert("RGB")
    elif mode != "RGB":
        image = image.convert("RGB")
    array = np.array(image, dtype=np.uint8)  # a writable copy
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageReadError(f"{name}: could not convert mode {mode} to RGB")
    return array


def read_stereo_pair(left: PathLike, right: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a left/right pair; both must exist and have the same size."""
    left_image, right_image = read_image(left), read_image(right)
    check_same_size(left_image, right_image, str(left), str(right))
    return left_image, right_image


def check_same_size(left: np.ndarray, right: np.ndarray, left_name: str = "left",
                    right_name: str = "right") -> None:
    """Raise IpassrError when the two views do not have the same height and width."""
    if left.shape[:2] != right.shape[:2]:
        raise IpassrError(
            f"{left_name} is {left.shape[1]}x{left.shape[0]} but {right_name} is "
            f"{right.shape[1]}x{right.shape[0]}: the two views must have the same size")


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; honour the umask instead
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def check_writable_folder(folder: PathLike) -> None:
    """The folder exists and is writable, or can be created; IpassrError naming it otherwise."""
    folder = Path(folder)
    existing = folder if str(folder) else Path(".")
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise IpassrError(f"{folder}: cannot create this folder ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise IpassrError(f"{existing}: no permission to write here")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_image(path: PathLike, image: np.ndarray) -> None:
    """Write an RGB uint8 (H, W, 3) array atomically; format taken from the file suffix."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise IpassrError(f"{path}: unknown image format '{path.suffix}' (use .png)")
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise TypeError(f"write_image expects uint8, got {array.dtype}")
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format=fmt)


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> float32 tensor (1, 3, H, W) in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def tensor_to_image(tensor: torch.Tensor) -> np.ndarray:
    """Float tensor (3, H, W) or (1, 3, H, W) -> RGB uint8 (H, W, 3): clamped to [0, 1], rounded."""
    import torch

    if tensor.dim() == 4:
        if tensor.shape[0] != 1:
            raise ValueError("tensor_to_image takes a single image, not a batch")
        tensor = tensor[0]
    quantised = tensor.detach().float().clamp(0, 1).mul(255.0).round().to(torch.uint8)
    return quantised.permute(1, 2, 0).cpu().numpy()
