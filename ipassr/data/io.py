"""Reading and writing images safely, keeping what they store.

Three ways in and one way out:

* ``read_pixels``: the pixels as the file stores them, the array that ``write_image`` writes
  back: (H, W) grey, (H, W, 2) grey + alpha, (H, W, 3) RGB or (H, W, 4) RGBA; uint8, or uint16
  for 16-bit PNG/TIFF (16-bit colour is read with OpenCV, ``ipassr[stereo]``; Pillow keeps only
  the high byte).
* ``float_views``: such an array as a network takes it (``FloatImage``): colour (H, W, 3)
  float32 in [0, 1] (grey repeated), alpha (H, W) apart, and the ``PixelFormat`` that
  ``FloatImage.pixels`` rounds a result back to. Only that rounding quantises.
* ``read_image``: RGB uint8 (H, W, 3) whatever the file (16-bit scaled by 255/65535, alpha dropped
  with a warning unless it is opaque), for datasets, training and evaluation.

Every output file is written atomically (temporary file + rename), so an interrupted run never
leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ImageReadError, IpassrError

if TYPE_CHECKING:  # torch only once images become tensors: the CLI parses without it
    import torch

PathLike = str | os.PathLike

SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
# PIL modes with one colour channel (bilevel, 8-bit, 16-bit, 32-bit int or float, with alpha)
GREY_MODES = frozenset({"1", "L", "LA", "La", "F"}) | SIXTEEN_BIT_MODES
ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
SIXTEEN_BIT_FORMATS = frozenset({"PNG", "TIFF"})  # where write_image keeps 16 bits
ALPHA_FORMATS = frozenset({"PNG", "TIFF", "WEBP"})  # where write_image keeps alpha
FLOAT_RANGE_LIMIT = 1.5  # float values above this look like 0..255, not 0..1
_PEAKS = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def require_opencv(purpose: str = "disparity evaluation"):
    """Import cv2, or raise IpassrError saying that ``purpose`` needs it and how to install it."""
    try:
        import cv2
    except ImportError as exc:
        raise IpassrError(f"{purpose} needs OpenCV: pip install 'ipassr[stereo]' "
                          "(opencv-python-headless)") from exc
    return cv2


@contextlib.contextmanager
def opened_image(path: PathLike) -> Iterator[Image.Image]:
    """The image file opened by Pillow (not yet decoded); ImageReadError naming the file."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a directory, not an image")
    try:
        with Image.open(path) as image:
            yield image
    except (ImageReadError, IpassrError):
        raise
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{path}: {too_large(exc)}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({exc})") from exc


def read_image(path: PathLike) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3); raise ImageReadError naming the file."""
    with opened_image(path) as image:
        image.load()
        return pil_to_rgb_array(image, name=str(path))


def read_pixels(path: PathLike) -> np.ndarray:
    """Read an image file as it stores its pixels (see the module docstring): (H, W[, C]) uint8
    or uint16, C = 2 (grey + alpha), 3 (RGB) or 4 (RGBA); ImageReadError naming the file."""
    with opened_image(path) as image:
        return image_pixels(image, path)


def image_pixels(image: Image.Image, path: PathLike) -> np.ndarray:
    """The pixels of an opened image not yet decoded (from ``path``), as ``read_pixels`` gives
    them: Pillow decodes, except 16-bit colour, which OpenCV decodes from ``path``."""
    stored = _stored_mode(image)
    if stored in ("RGB;16", "RGBA;16", "LA;16"):
        return _read_sixteen_bit_colour(path, stored)
    image.load()
    return pil_to_pixels(image, str(path), sixteen_bit=stored.endswith(";16"))


def too_large(exc: Exception) -> str:
    """Why Pillow refused an image whose header claims more pixels than it will decode."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = f"{int(found.group(1)) / 1e6:,.0f} megapixels" if found else "too many pixels"
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
    return (f"its header claims {pixels}, more than the {limit:,.0f} megapixels Pillow will "
            "decode (a damaged or hostile file?)")


def _stored_mode(image: Image.Image) -> str:
    """'RGB;16', 'L;16', ... for 16 bits a channel as the file stores them (from the raw mode of
    an image not yet decoded), else the image's mode."""
    tile = getattr(image, "tile", None)  # only images decoded from a file have one
    args = tile[0][3] if tile else None  # (codec, extents, offset, args)
    raw = args if isinstance(args, str) else (args[0] if args and isinstance(args[0], str) else "")
    if ";16" not in raw:
        return image.mode
    base = raw.split(";")[0]
    return "L;16" if base in ("I", "L") else f"{base};16"


def _read_sixteen_bit_colour(path: PathLike, stored: str) -> np.ndarray:
    """A 16-bit RGB, RGBA or grey + alpha file through OpenCV (Pillow keeps only the high byte)."""
    cv2 = require_opencv(f"{path}: 16-bit colour images")
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None or data.dtype != np.uint16 or data.ndim != 3:
        raise ImageReadError(f"{path}: not a readable 16-bit {stored[:-3]} image")
    rgb = data[:, :, 2::-1]  # OpenCV stores BGR(A)
    if stored == "LA;16":
        return np.ascontiguousarray(np.stack([data[:, :, 0], data[:, :, 3]], axis=2))
    if stored == "RGBA;16":
        return np.ascontiguousarray(np.concatenate([rgb, data[:, :, 3:4]], axis=2))
    return np.ascontiguousarray(rgb)


def pil_to_pixels(image: Image.Image, name: str = "image", sixteen_bit: bool | None = None
                  ) -> np.ndarray:
    """A PIL image as its pixels are stored: (H, W) L, (H, W, 2) LA, (H, W, 3) RGB or (H, W, 4)
    RGBA, uint8; 16-bit grey as uint16 (H, W). Palettes become RGB (RGBA with transparency),
    other colour modes RGB. ``sixteen_bit`` (from the file) tells a 32-bit mode I image holding
    16-bit values; None guesses from the values."""
    mode = image.mode
    if mode == "F":
        raise ImageReadError(f"{name}: floating-point images (mode F) are not supported")
    if mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image)
        if mode == "I" and not (sixteen_bit or (sixteen_bit is None and values.max(initial=0) > 255)):
            return values.clip(0, 255).astype(np.uint8)
        return values.clip(0, 65535).astype(np.uint16)
    if mode == "P":
        mode = "RGBA" if "transparency" in image.info else "RGB"
    target = {"1": "L", "L": "L", "LA": "LA", "La": "LA", "PA": "RGBA", "RGBA": "RGBA",
              "RGBa": "RGBA"}.get(mode, "RGB")
    return np.array(image if image.mode == target else image.convert(target), dtype=np.uint8)


def pil_to_rgb_array(image: Image.Image, name: str = "image") -> np.ndarray:
    """Convert a PIL image of any common mode to RGB uint8 (H, W, 3).

    16-bit images are scaled to 8 bits (not clipped); an alpha channel is dropped, with a warning
    unless it is fully opaque.
    """
    pixels = pil_to_pixels(image, name)
    if pixels.dtype == np.uint16:
        pixels = np.clip(np.round(pixels.astype(np.float64) * (255.0 / 65535.0)), 0, 255
                         ).astype(np.uint8)
    if pixels.ndim == 3 and pixels.shape[2] in (2, 4):
        if pixels[:, :, -1].min(initial=255) < 255:
            warnings.warn(f"{name}: alpha channel dropped", stacklevel=3)
        pixels = pixels[:, :, :-1]
    if pixels.ndim == 2 or pixels.shape[2] == 1:
        pixels = np.repeat(pixels.reshape(pixels.shape[0], pixels.shape[1], 1), 3, axis=2)
    return np.ascontiguousarray(pixels)


@dataclass(frozen=True)
class PixelFormat:
    """How an image array stores its pixels: one colour channel or three, an alpha channel or
    not, and the value type (uint8, uint16, or float32 in [0, 1])."""

    grey: bool = False
    alpha: bool = False
    dtype: np.dtype = np.dtype(np.uint8)

    @property
    def peak(self) -> float:
        """The value of full intensity: 255, 65535, or 1 for floats."""
        return _PEAKS.get(self.dtype, 1.0)


@dataclass
class FloatImage:
    """An image as a network takes it: ``colour`` (H, W, 3) float32 in [0, 1] (grey repeated to
    three channels), ``alpha`` (H, W) float32 in [0, 1] or None, and the ``format`` it came in."""

    colour: np.ndarray
    alpha: np.ndarray | None
    format: PixelFormat

    def pixels(self) -> np.ndarray:
        """Back to the array of ``format``, rounded to its integer levels (clamped to [0, 1]);
        a grey format takes the first colour channel (make the channels equal first)."""
        channels = [self.colour[:, :, :1] if self.format.grey else self.colour]
        if self.alpha is not None and self.format.alpha:
            channels.append(self.alpha[:, :, None])
        values = channels[0] if len(channels) == 1 else np.concatenate(channels, axis=2)
        values = np.clip(values, 0.0, 1.0)
        if self.format.dtype != np.float32:
            values = np.round(values * np.float32(self.format.peak)).astype(self.format.dtype)
        return values[:, :, 0] if values.shape[2] == 1 else values


def float_views(array: np.ndarray, name: str = "image") -> FloatImage:
    """An image array, (H, W) or (H, W, C) with C = 1 to 4, uint8, uint16 or float in [0, 1], as
    the float views a network takes (``FloatImage``); the channel count and dtype are its format."""
    array = np.asarray(array)
    channels = 1 if array.ndim == 2 else array.shape[2] if array.ndim == 3 else 0
    if channels not in (1, 2, 3, 4):
        raise IpassrError(f"{name}: expected an array (H, W) or (H, W, C) with C = 1 to 4, got "
                          f"shape {array.shape}")
    if array.dtype in _PEAKS:
        dtype = array.dtype
        values = np.divide(array, np.float32(_PEAKS[dtype]), dtype=np.float32)
    elif np.issubdtype(array.dtype, np.floating):
        dtype = np.dtype(np.float32)
        values = array.astype(np.float32)  # a copy: the caller's array is never written
        top = float(values.max()) if values.size else 0.0
        if top > FLOAT_RANGE_LIMIT:
            raise IpassrError(f"{name}: float values must be in [0, 1], but they reach {top:g} "
                              "(divide by 255, or pass uint8 values)")
    else:
        raise IpassrError(f"{name}: unsupported array dtype {array.dtype} (use uint8, uint16 or "
                          "float in [0, 1])")
    values = values.reshape(values.shape[0], values.shape[1], channels)
    grey, alpha = channels in (1, 2), channels in (2, 4)
    colour = values[:, :, :1 if grey else 3]
    if grey:
        colour = np.repeat(colour, 3, axis=2)
    return FloatImage(np.ascontiguousarray(colour), values[:, :, -1] if alpha else None,
                      PixelFormat(grey=grey, alpha=alpha, dtype=dtype))


def read_stereo_pair(left: PathLike, right: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a left/right pair as RGB uint8; both must exist and have the same size."""
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


def image_format(path: PathLike) -> str:
    """Pillow's format name for the file suffix ('PNG', 'JPEG', ...); IpassrError if unknown."""
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None:
        raise IpassrError(f"{path}: unknown image format '{Path(path).suffix}' (use .png)")
    return fmt


def write_image(path: PathLike, image: np.ndarray) -> None:
    """Write an image array as ``read_pixels`` gives them, atomically: (H, W) grey, (H, W, 2)
    grey + alpha, (H, W, 3) RGB or (H, W, 4) RGBA, uint8 or uint16; format from the suffix.

    16 bits are kept in PNG and TIFF (16-bit colour through OpenCV), alpha in PNG, TIFF and WebP;
    other formats get 8 bits, or lose the alpha, with a warning.
    """
    path = Path(path)
    fmt = image_format(path)
    array = np.asarray(image)
    if array.dtype not in _PEAKS:
        raise TypeError(f"write_image expects uint8 or uint16, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] in (2, 4) and fmt not in ALPHA_FORMATS:
        warnings.warn(f"{path}: {fmt} has no alpha channel: alpha dropped", stacklevel=2)
        array = array[:, :, :-1]
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.dtype == np.uint16 and fmt not in SIXTEEN_BIT_FORMATS:
        warnings.warn(f"{path}: {fmt} holds 8 bits a channel: 16-bit result written as 8-bit",
                      stacklevel=2)
        array = np.round(array.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    with atomic_path(path) as tmp:
        if array.dtype == np.uint16 and array.ndim == 3:
            _write_sixteen_bit_colour(tmp, array, fmt, path)
        else:
            Image.fromarray(array).save(tmp, format=fmt)


def _write_sixteen_bit_colour(tmp: Path, array: np.ndarray, fmt: str, path: Path) -> None:
    """16-bit grey + alpha, RGB or RGBA as PNG or TIFF through OpenCV (Pillow has no such mode)."""
    cv2 = require_opencv(f"{path}: writing 16-bit colour")
    if array.shape[2] == 2:  # OpenCV writes 1, 3 or 4 channels: grey + alpha as RGBA
        array = np.concatenate([np.repeat(array[:, :, :1], 3, axis=2), array[:, :, 1:]], axis=2)
    bgr = np.concatenate([array[:, :, 2::-1], array[:, :, 3:]], axis=2)
    ok, data = cv2.imencode(".png" if fmt == "PNG" else ".tiff", np.ascontiguousarray(bgr))
    if not ok:
        raise IpassrError(f"{path}: OpenCV could not encode this image")
    tmp.write_bytes(data.tobytes())


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
