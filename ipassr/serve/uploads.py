"""What the web page accepts: uploads checked in bytes and pixels from their headers before any
pixel is decoded, then read into one stereo photo by the media reader (``ipassr.data.media``).

Messages name the uploaded file by its own name (not the server's temporary path) and speak of
the page's inputs instead of the command line's options.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..data import containers
from ..data.media import StereoImage, read_stereo, read_views
from ..errors import IpassrError
from ..sizes import format_bytes

MAX_FRAMES = 8  # a stereo file has two pictures (plus a preview or depth map at most)
AUTO_LAYOUT = "from the file"  # the layout choice that lets the container say (MPO, JPS, HEIC)
PAGE_WORDS = {"--input": "the stereo-file box", "--layout": "the layout choice",
              "--left/--right": "the two picture boxes",
              "raise --max-memory or use smaller images": "use a smaller pair, or the known-answer "
              "mode, which shrinks it first (the server's --max-memory is set when it starts)"}


@dataclass(frozen=True)
class Limits:
    """The largest upload: bytes per file and pixels per picture (frame) in it."""

    max_bytes: int = 30 * 2 ** 20
    max_pixels: int = 24_000_000

    def describe(self) -> str:
        return (f"at most {format_bytes(self.max_bytes)} per file and "
                f"{self.max_pixels / 1e6:g} megapixels per picture")


def picture_sizes(path: Path) -> list[tuple[int, int]]:
    """(width, height) of every picture in the file, read from its headers (nothing decoded)."""
    if containers.is_heif(path):
        try:
            import pillow_heif
        except ImportError:
            return []  # the reader says how to install it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            heif = pillow_heif.open_heif(path, convert_hdr_to_8bit=False)
            return [image.size for image in heif][:MAX_FRAMES + 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            sizes = []
            for frame in range(min(getattr(image, "n_frames", 1), MAX_FRAMES + 1)):
                image.seek(frame)
                sizes.append(image.size)
            return sizes


def check_upload(path: Path, limits: Limits) -> None:
    """Refuse a file over the byte or pixel limits, or that is no picture, before decoding it."""
    name = path.name
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise IpassrError(f"{name}: {format_bytes(size)}, more than this server takes "
                          f"({limits.describe()})")
    try:
        sizes = picture_sizes(path)
    except Image.DecompressionBombError:
        raise IpassrError(f"{name}: its header claims more pixels than Pillow will decode (a "
                          f"damaged or hostile file?); this server takes {limits.describe()}"
                          ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise IpassrError(f"{name}: not a picture ipassr reads (PNG, JPEG, MPO, JPS, HEIC, ...): "
                          f"{exc}") from None
    if len(sizes) > MAX_FRAMES:
        raise IpassrError(f"{name}: more than {MAX_FRAMES} pictures in one file; a stereo photo "
                          "has two")
    for width, height in sizes:
        if width * height > limits.max_pixels:
            raise IpassrError(f"{name}: a {width}x{height} picture ({width * height / 1e6:.3g} "
                              f"megapixels), more than this server takes ({limits.describe()})")


def in_page_words(message: str, *paths: Path | None) -> str:
    """An error message with temporary paths shortened to file names and options to inputs."""
    for path in paths:
        if path is not None:
            message = message.replace(str(path), path.name)
    for option, words in PAGE_WORDS.items():
        message = message.replace(option, words)
    return message


def read_upload(stereo: Path | None, left: Path | None, right: Path | None,
                layout: str | None, limits: Limits) -> StereoImage:
    """One stereo photo from the page's inputs: a stereo file (in ``layout``, or as its container
    says), or a left and a right picture. Every problem is one IpassrError line."""
    try:
        if stereo is not None and (left is not None or right is not None):
            raise IpassrError("give one stereo file, or a left and a right picture, not both")
        if stereo is not None:
            check_upload(stereo, limits)
            return rgb_photo(read_stereo(stereo, None if layout in (None, AUTO_LAYOUT) else layout))
        if left is None or right is None:
            raise IpassrError("upload a stereo file (MPO, JPS, spatial HEIC, or one picture "
                              "holding both views), or both a left and a right picture")
        check_upload(left, limits)
        check_upload(right, limits)
        return rgb_photo(read_views(left, right))
    except IpassrError as exc:
        raise IpassrError(in_page_words(str(exc), stereo, left, right)) from None


def rgb8(view: np.ndarray) -> np.ndarray:
    """Any view the reader gives (grey, 16-bit, alpha) as the RGB uint8 (H, W, 3) a page shows."""
    array = np.asarray(view)
    if array.dtype == np.uint16:
        array = np.round(array / 257.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise IpassrError(f"unsupported pixel type {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] in (2, 4):  # drop alpha
        array = array[:, :, :-1]
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array)


def rgb_photo(photo: StereoImage) -> StereoImage:
    """The photo with both views as RGB uint8."""
    return photo.with_views(rgb8(photo.left), rgb8(photo.right))


__all__ = ["Limits", "check_upload", "read_upload", "picture_sizes", "in_page_words", "rgb8",
           "AUTO_LAYOUT"]
