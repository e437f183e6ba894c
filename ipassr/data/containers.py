"""Stereo photo containers: MPO (CIPA DC-007), JPS (side-by-side JPEG) and spatial HEIC.

Each reader returns the two views as PIL images, left first, or raises ``ImageReadError``
naming the file; each writer returns the file's bytes. The byte-level parts are the MP entries
of an MPO (which frame is a view) and the JPS ``_JPSJPS_`` APP3 block (which layout).
HEIC needs the optional ``pillow-heif`` (``pip install 'ipassr[heic]'``; GPL binary wheels).
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

from PIL import Image

from ..errors import ImageReadError

JPEG_QUALITY = 95  # MPO and JPS outputs: an SR result deserves more than Pillow's default 75
DISPARITY = 0x020002  # MP type "Multi-Frame Image: Disparity" (a view of a stereo photo)
REPRESENTATIVE = 1 << 29  # the frame a 2D viewer shows
HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
PILLOW_HEIF_WITH_GROUPS = (1, 8, 1)  # reads 'ster' entity groups (info["entity_groups"])
JPS_ID = b"_JPSJPS_"
# JPS descriptor (VRex): layout byte 2 = side by side, 3 = over/under; flags: 1 half height,
# 2 half width, 4 left view first (FFmpeg's mjpeg decoder reads it the same way)
JPS_SIDE_BY_SIDE, JPS_OVER_UNDER = 2, 3
JPS_HALF_HEIGHT, JPS_HALF_WIDTH, JPS_LEFT_FIRST = 1, 2, 4


def is_heif(path: Path) -> bool:
    """Whether the file starts like a HEIF image (an ``ftyp`` box with an image brand)."""
    with open(path, "rb") as file:
        head = file.read(12)
    return head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS


# --- MPO ---------------------------------------------------------------------------------------

def mpo_view_frames(image: Image.Image) -> list[int]:
    """Indices of the frames of an opened MPO that its MP entries mark as Disparity (views)."""
    entries = (getattr(image, "mpinfo", None) or {}).get(0xB002, [])
    return [i for i, entry in enumerate(entries)
            if entry.get("Attribute", {}).get("MPType") == "Multi-Frame Image: (Disparity)"]


def read_mpo(image: Image.Image, name: str) -> tuple[Image.Image, Image.Image]:
    """The left and right views of an opened MPO: its two Disparity frames, in file order
    (CIPA DC-007 orders them from the leftmost viewpoint)."""
    frames = getattr(image, "n_frames", 1)
    views = mpo_view_frames(image)
    if frames < 2:
        raise ImageReadError(f"{name}: an MPO with one frame, not a stereo photo (it needs a left "
                             "and a right view)")
    if not views:
        raise ImageReadError(f"{name}: not a stereo photo: its {frames} MPO frames are previews or "
                             "thumbnails, none is marked as a view (Disparity); if the picture holds "
                             "both views side by side, give --layout")
    if len(views) != 2:
        raise ImageReadError(f"{name}: {len(views)} of its MPO frames are marked as views "
                             "(Disparity); a stereo pair needs exactly two")
    return _frame(image, views[0]), _frame(image, views[1])


def _frame(image: Image.Image, index: int) -> Image.Image:
    """Frame ``index`` of a multi-frame image, decoded (a copy that outlives the file)."""
    image.seek(index)
    image.load()
    return image.copy()


def write_mpo(left: Image.Image, right: Image.Image) -> bytes:
    """Two views as an MPO: Pillow's ``save_all``, then both MP entries marked Disparity, the left
    one representative, as the Nintendo 3DS and Fujifilm REAL 3D cameras write them."""
    buffer = io.BytesIO()
    left.save(buffer, format="MPO", save_all=True, append_images=[right], quality=JPEG_QUALITY)
    data = bytearray(buffer.getvalue())
    mark_views(data)
    return bytes(data)


def mark_views(data: bytearray) -> None:
    """Set every MP entry of an MPO's first frame to Disparity (the first one representative), in place."""
    start = data.find(b"MPF\x00")
    if start < 0 or start > data.find(b"\xff\xda"):
        raise ValueError("no MP Index (APP2 'MPF') before the first scan")
    tiff = start + 4  # offsets in the MP header count from its byte-order mark
    order = "<" if data[tiff:tiff + 2] == b"II" else ">"
    ifd = tiff + struct.unpack_from(order + "I", data, tiff + 4)[0]
    for i in range(struct.unpack_from(order + "H", data, ifd)[0]):
        tag, _, count, value = struct.unpack_from(order + "HHII", data, ifd + 2 + 12 * i)
        if tag == 0xB002:  # MP Entry: 16 bytes per frame, the attribute first
            for frame in range(count // 16):
                attribute = DISPARITY | (REPRESENTATIVE if frame == 0 else 0)
                struct.pack_into(order + "I", data, tiff + value + 16 * frame, attribute)
            return
    raise ValueError("the MP Index has no MP Entry")


# --- JPS ---------------------------------------------------------------------------------------

def jps_layout(image: Image.Image, name: str) -> str:
    """The layout a JPS's ``_JPSJPS_`` block states; ``sbsr`` (cross-eyed) when it has none."""
    for marker, payload in getattr(image, "applist", []):
        if marker == "APP3" and payload.startswith(JPS_ID) and len(payload) >= 14:
            _, flags, layout, media_type = payload[10:14]
            return _jps_descriptor_layout(media_type, layout, flags, name)
    return "sbsr"


def _jps_descriptor_layout(media_type: int, layout: int, flags: int, name: str) -> str:
    if media_type != 1:
        raise ImageReadError(f"{name}: its JPS block marks it monoscopic (2D), not a stereo pair")
    left = "l" if flags & JPS_LEFT_FIRST else "r"
    if layout == JPS_SIDE_BY_SIDE:
        return ("sbs2" if flags & JPS_HALF_WIDTH else "sbs") + left
    if layout == JPS_OVER_UNDER:
        return ("tb2" if flags & JPS_HALF_HEIGHT else "tb") + left
    kinds = {1: "interleaved", 4: "anaglyph"}
    raise ImageReadError(f"{name}: its JPS block gives a {kinds.get(layout, f'layout {layout}')} "
                         "stereo format; ipassr reads side-by-side and over/under JPS")


def write_jps(image: Image.Image, layout: str) -> bytes:
    """One side-by-side or over/under picture as a JPS: JPEG plus the ``_JPSJPS_`` block."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    data = buffer.getvalue()
    over_under = layout.startswith("tb")
    flags = (JPS_LEFT_FIRST if layout.endswith("l") else 0) | (
        (JPS_HALF_HEIGHT if over_under else JPS_HALF_WIDTH) if "2" in layout else 0)
    descriptor = bytes([0, flags, JPS_OVER_UNDER if over_under else JPS_SIDE_BY_SIDE, 1])
    payload = JPS_ID + struct.pack(">H", len(descriptor)) + descriptor
    segment = b"\xff\xe3" + struct.pack(">H", 2 + len(payload)) + payload
    after_jfif = 2 + (2 + struct.unpack_from(">H", data, 4)[0] if data[2:4] == b"\xff\xe0" else 0)
    return data[:after_jfif] + segment + data[after_jfif:]


# --- spatial HEIC ------------------------------------------------------------------------------

def read_heic(path: Path, name: str, whole_image: bool = False) -> list[Image.Image]:
    """The views of a spatial HEIC, in the order of its ``ster`` group's images (left, right),
    never by frame index; ``whole_image``: the primary image alone (a picture holding both views)."""
    heif = _open_heif(path, name)
    if whole_image:
        return [heif[heif.primary_index].to_pillow()]
    groups = [g for g in heif.info.get("entity_groups", []) if g.get("type") == "ster"]
    if not groups:
        what = "one image" if len(heif) == 1 else f"{len(heif)} images"
        raise ImageReadError(f"{name}: a HEIC with {what} and no 'ster' stereo-pair group, so not a "
                             "spatial photo; if the picture holds both views side by side, give --layout")
    images = groups[0].get("images", [])
    if len(images) != 2 or any(i is None or not 0 <= i < len(heif) for i in images):
        raise ImageReadError(f"{name}: its 'ster' group does not name two images of the file "
                             f"({groups[0].get('entities')})")
    try:
        return [heif[i].to_pillow() for i in images]
    except (RuntimeError, ValueError, OSError) as exc:
        raise ImageReadError(f"{name}: truncated or damaged HEIC ({str(exc).strip()})") from exc


def heic_image_count(path: Path, name: str) -> int:
    """How many top-level images a HEIC holds (a view file must hold one)."""
    return len(_open_heif(path, name))


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _open_heif(path: Path, name: str):
    try:
        import pillow_heif
    except ImportError:
        raise ImageReadError(f"{name}: reading HEIC needs pillow-heif: pip install 'ipassr[heic]' "
                             "(its binary wheels are GPL-licensed, so it is optional)") from None
    if _version(pillow_heif.__version__) < PILLOW_HEIF_WITH_GROUPS:
        raise ImageReadError(f"{name}: reading spatial HEIC needs pillow-heif 1.8.1 or newer (which "
                             f"reads its 'ster' group); this is {pillow_heif.__version__}: "
                             "pip install -U 'ipassr[heic]'")
    try:
        return pillow_heif.open_heif(path)
    except (RuntimeError, ValueError, OSError, SyntaxError, EOFError) as exc:
        raise ImageReadError(f"{name}: truncated or damaged HEIC ({str(exc).strip()})") from exc
