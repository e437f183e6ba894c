"""Reading 3D video through PyAV, whose wheels bundle FFmpeg (the optional extra ``ipassr[video]``).

``probe_video`` checks a file before any computing (a video stream, every packet readable, the
frame count, the stereo layout the container names); ``decoded_frames`` streams its frames as RGB
arrays (H, W, 3), uint8, or uint16 for inputs deeper than 8 bits, with their timestamps.
``video_encode`` writes them back.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import IpassrError
from .io import PathLike
from .mp4_boxes import cut_short

# containers ipassr writes (suffix -> FFmpeg muxer); any container FFmpeg reads is an input
OUTPUT_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska",
                     ".webm": "webm"}
INPUT_SUFFIXES = {*OUTPUT_CONTAINERS, ".avi", ".ts", ".m2ts", ".mts", ".mpg", ".mpeg", ".wmv",
                  ".flv", ".3gp", ".ogv"}

# the layouts a container can name, as FFmpeg's stereo3d side data gives them: (type, inverted)
_SIDE_BY_SIDE, _TOP_BOTTOM, _INVERT = 1, 2, 1  # AV_STEREO3D_SIDEBYSIDE/TOPBOTTOM, FLAG_INVERT
STEREO3D_LAYOUTS = {(_SIDE_BY_SIDE, False): "sbsl", (_SIDE_BY_SIDE, True): "sbsr",
                    (_TOP_BOTTOM, False): "tbl", (_TOP_BOTTOM, True): "tbr"}


def require_av() -> Any:
    """The ``av`` module, or one line saying how to install it."""
    try:
        import av
    except ImportError:
        raise IpassrError("video needs PyAV: pip install 'ipassr[video]'") from None
    av.logging.set_level(av.logging.FATAL)  # our errors say what went wrong, in one line
    return av


def is_video_path(path: PathLike) -> bool:
    """Whether ``path`` names a video container (by its suffix)."""
    return Path(path).suffix.lower() in INPUT_SUFFIXES


def output_format(path: PathLike) -> str:
    """The FFmpeg muxer for an output video's suffix; IpassrError naming the choices otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_CONTAINERS:
        raise IpassrError(f"{path}: cannot write video as '{suffix}' (use one of "
                          f"{', '.join(OUTPUT_CONTAINERS)})")
    return OUTPUT_CONTAINERS[suffix]


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe_video`` found: the video stream's size, timing, colour tags and layout."""

    path: Path
    index: int  # of the video stream
    width: int
    height: int
    frames: int
    rate: Fraction  # average frame rate
    time_base: Fraction
    pix_fmt: str
    deep: bool  # more than 8 bits per sample: frames come as uint16
    colour: dict[str, int]  # color_primaries, color_trc, colorspace, color_range (FFmpeg's codes)
    layout: str | None  # what the container says, None when it says nothing
    audio: tuple[int, ...] = field(default=())  # audio stream indices, copied to the output
    duration: float | None = None  # seconds


COLOUR_TAGS = ("color_primaries", "color_trc", "colorspace", "color_range")


def probe_video(path: PathLike) -> VideoInfo:
    """Open a video, read every packet of its video stream (a truncated or damaged file fails
    here, before anything is computed) and describe it."""
    av = require_av()
    path = Path(path)
    if path.is_file() and cut_short(path):
        raise IpassrError(f"{path}: truncated (it ends inside an MP4 box)")
    with open_input(path) as container:
        stream = video_stream(container, path)
        refuse_multiview(stream, path)
        context = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate or not context.width or not context.pix_fmt:
            raise IpassrError(f"{path}: its video stream holds no decodable frames")
        info = VideoInfo(
            path=path, index=stream.index, width=context.width, height=context.height, frames=0,
            rate=Fraction(rate), time_base=Fraction(stream.time_base), pix_fmt=context.pix_fmt,
            deep=any(c.bits > 8 for c in av.VideoFormat(context.pix_fmt).components),
            colour={tag: int(getattr(context, tag)) for tag in COLOUR_TAGS},
            layout=container_layout(container, stream),
            audio=tuple(s.index for s in container.streams.audio),
            duration=container.duration / 1e6 if container.duration else None)
    return replace(info, frames=count_frames(info))


class open_input:
    """``with open_input(path) as container``: av.open for reading, errors as one line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> Any:
        av = require_av()
        if not self.path.is_file():
            raise IpassrError(f"{self.path}: no such file")
        try:
            self.container = av.open(str(self.path))
        except av.error.FFmpegError as error:
            raise IpassrError(f"{self.path}: not a readable video ({reason(error)})") from None
        return self.container

    def __exit__(self, *exc: object) -> None:
        self.container.close()


def reason(error: Exception) -> str:
    """FFmpeg's words for an error, without the errno and file name PyAV adds."""
    return getattr(error, "strerror", None) or str(error)


def video_stream(container: Any, path: Path) -> Any:
    """The first video stream that is not a cover picture."""
    for stream in container.streams.video:
        if not stream.disposition & stream.disposition.attached_pic:
            return stream
    raise IpassrError(f"{path}: has no video stream")


def refuse_multiview(stream: Any, path: Path) -> None:
    """Apple spatial video (MV-HEVC) holds its second view in a layer PyAV cannot place.

    The bundled FFmpeg decodes both layers, but PyAV cannot read the frames' view-position side
    data (it refuses the VIEW_ID type), and guessing which layer is the left eye is exactly
    what must not happen; docs/media.md says how to convert such a file to SBS first.
    """
    if stream.codec_context.name == "hevc" and stream.disposition & stream.disposition.multilayer:
        raise IpassrError(
            f"{path}: an MV-HEVC (Apple spatial) video: PyAV cannot tell which view is left and "
            "which right; convert it to side by side first, e.g. ffmpeg -i IN -filter_complex "
            "'[0:v:vpos:left][0:v:vpos:right]hstack' -c:a copy sbs.mp4 (docs/media.md)")


def count_frames(info: VideoInfo) -> int:
    """Frames in the video stream, counted by reading every packet (no decoding). A file is
    truncated or damaged when the demuxer reports an error, when fewer frames are there than the
    container counts (MP4, MOV), or when they end well before its stated duration."""
    av = require_av()
    count, end = 0, 0.0
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture() as problems, open_input(info.path) as container:
            stream = container.streams[info.index]
            for packet in container.demux(stream):
                if packet.size and not packet.is_corrupt:
                    count += 1
                    end = max(end, float((packet.pts or 0) * packet.time_base)
                              + float((packet.duration or 0) * packet.time_base))
            expected, stated = stream.frames, stated_duration(stream)
    except av.error.FFmpegError as error:
        problems = [(0, "", reason(error))]
    finally:
        av.logging.set_level(av.logging.FATAL)
    what = f"{info.path}: truncated or damaged after {count} frames"
    if problems:
        raise IpassrError(f"{what} ({problems[0][2].strip()})")
    if expected and count < expected:
        raise IpassrError(f"{what} (the container lists {expected})")
    if stated is not None and end < stated - 2 / info.rate:
        raise IpassrError(f"{what} (they end at {end:.2f} s of its {stated:.2f} s)")
    if not count:
        raise IpassrError(f"{info.path}: its video stream holds no frames")
    return count


def stated_duration(stream: Any) -> float | None:
    """The video stream's duration in seconds as its container states it (MP4: the track's;
    Matroska: the DURATION tag FFmpeg writes), None when it states none."""
    if stream.duration:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION", "")
    try:
        hours, minutes, seconds = tag.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def container_layout(container: Any, stream: Any) -> str | None:
    """The layout the container names (Matroska StereoMode, MP4 st3d, H.264 frame packing), read
    off the first frame's stereo3d side data; None when it names none.

    Neither container says whether each eye is stored at full or half size; splitting is the
    same, so the full-size name is given (docs/media.md).
    """
    av = require_av()
    try:
        frame = next(container.decode(stream), None)
        side = {s.type.name: bytes(s) for s in frame.side_data} if frame is not None else {}
    except (av.error.FFmpegError, ValueError):  # ValueError: a side-data type PyAV cannot name
        side = {}
    if "STEREO3D" not in side:
        return None
    kind, flags = np.frombuffer(side["STEREO3D"][:8], dtype=np.int32)
    return STEREO3D_LAYOUTS.get((int(kind), bool(flags & _INVERT)))


def decoded_frames(info: VideoInfo, wanted: Callable[[int], bool] = lambda index: True
                   ) -> Iterator[tuple[int, int, np.ndarray]]:
    """(index, pts, RGB frame (H, W, 3)) of the wanted frames, in display order.

    Every frame is decoded (the codec needs them all) but only wanted ones are converted: uint8,
    or uint16 when the input has more than 8 bits per sample. A frame without a timestamp gets
    its index times the frame duration.
    """
    av = require_av()
    pixel_format = "rgb48le" if info.deep else "rgb24"
    step = 1 / (info.rate * info.time_base)
    index = 0
    with open_input(info.path) as container:
        stream = container.streams[info.index]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                if wanted(index):
                    pts = frame.pts if frame.pts is not None else round(index * step)
                    yield index, pts, frame.to_ndarray(format=pixel_format)
                index += 1
        except av.error.FFmpegError as error:
            raise IpassrError(f"{info.path}: damaged at frame {index + 1} ({reason(error)})") from None
    if index != info.frames:
        raise IpassrError(f"{info.path}: {index} frames decoded of the {info.frames} it holds "
                          "(damaged?)")
