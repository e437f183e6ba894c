"""3D video in and out through PyAV, whose wheels bundle FFmpeg (the optional extra ``ipassr[video]``).

``probe_video`` checks a file before any computing (a video stream, every packet readable, the
frame count, the stereo layout the container names); ``decoded_frames`` streams its frames as RGB
arrays (H, W, 3), uint8, or uint16 for inputs deeper than 8 bits; ``write_segment`` encodes frames
into one small file, atomically; ``join_segments`` remuxes the segments, without re-encoding,
together with the input's audio into the output and writes the layout where the container has a
place for it (Matroska ``StereoMode``, MP4/MOV ``st3d``). Timestamps pass through unchanged, so
the frame rate, the time base (where the container can hold it) and the audio sync are the
input's.
"""

from __future__ import annotations

import heapq
import io
import warnings
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ..errors import IpassrError
from .io import PathLike, atomic_path
from .mp4_boxes import add_st3d, cut_short

# containers ipassr writes (suffix -> FFmpeg muxer); any container FFmpeg reads is an input
OUTPUT_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska",
                     ".webm": "webm"}
INPUT_SUFFIXES = {*OUTPUT_CONTAINERS, ".avi", ".ts", ".m2ts", ".mts", ".mpg", ".mpeg", ".wmv",
                  ".flv", ".3gp", ".ogv"}
DEFAULT_CODECS = {"webm": "libvpx-vp9"}  # else libx264
SEGMENT_FORMAT = "mp4"  # keeps any time base exactly (Matroska rounds to milliseconds)

# the layouts a container can name: FFmpeg's stereo3d (type, inverted) and Matroska's StereoMode
_SIDE_BY_SIDE, _TOP_BOTTOM, _INVERT = 1, 2, 1  # AV_STEREO3D_SIDEBYSIDE/TOPBOTTOM, FLAG_INVERT
STEREO3D_LAYOUTS = {(_SIDE_BY_SIDE, False): "sbsl", (_SIDE_BY_SIDE, True): "sbsr",
                    (_TOP_BOTTOM, False): "tbl", (_TOP_BOTTOM, True): "tbr"}
MATROSKA_STEREO_MODES = {"sbsl": "left_right", "sbsr": "right_left", "tbl": "top_bottom",
                         "tbr": "bottom_top"}
ST3D_MODES = {"sbsl": 2, "tbl": 1}  # st3d (Spherical Video V2) has no right-eye-first modes


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
    what must not happen; docs/inference.md says how to convert such a file to SBS first.
    """
    if stream.codec_context.name == "hevc" and stream.disposition & stream.disposition.multilayer:
        raise IpassrError(
            f"{path}: an MV-HEVC (Apple spatial) video: PyAV cannot tell which view is left and "
            "which right; convert it to side by side first, e.g. ffmpeg -i IN -filter_complex "
            "'[0:v:vpos:left][0:v:vpos:right]hstack' -c:a copy sbs.mp4 (docs/inference.md)")


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
    same, so the full-size name is given (docs/inference.md).
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


@dataclass(frozen=True)
class Encoding:
    """How output frames are encoded: codec, quality, pixel format, size, timing, colour tags."""

    codec: str
    crf: int
    pix_fmt: str
    rate: Fraction
    time_base: Fraction
    colour: dict[str, int]

    @property
    def options(self) -> dict[str, str]:
        """Encoder options: constant quality (VP9 needs a zero bitrate for that); x265 quiet."""
        quality = {"crf": str(self.crf)}
        if self.codec.startswith("libvpx"):
            return {**quality, "b": "0"}
        return {**quality, "x265-params": "log-level=error"} if self.codec == "libx265" else quality


def choose_encoding(info: VideoInfo, output: PathLike, codec: str | None = None,
                    crf: int = 18) -> Encoding:
    """The encoding of ``output``: ``codec`` (default H.264; VP9 for WebM) at constant quality
    ``crf``, in the input's pixel format where the encoder takes it (else yuv420p), with the
    input's timing and colour tags. Refuses, before any computing, an encoder this FFmpeg lacks
    or a container that cannot hold its codec."""
    av = require_av()
    muxer = output_format(output)
    codec = codec or DEFAULT_CODECS.get(muxer, "libx264")
    try:
        encoder = av.codec.Codec(codec, "w")
    except (av.error.FFmpegError, ValueError):
        raise IpassrError(f"{output}: no video encoder named '{codec}' in this FFmpeg") from None
    if encoder.type != "video":
        raise IpassrError(f"{output}: '{codec}' is not a video encoder")
    for name, container in ((muxer, output), (SEGMENT_FORMAT, "its work segments")):
        if encoder.canonical_name not in _supported_codecs(name):
            raise IpassrError(f"{output}: {container} ({name}) cannot hold {codec} video")
    formats = {f.name for f in encoder.video_formats or ()}
    pix_fmt = info.pix_fmt if info.pix_fmt in formats or not formats else "yuv420p"
    return Encoding(codec, crf, pix_fmt, info.rate, info.time_base, info.colour)


def _supported_codecs(muxer: str) -> set[str]:
    """The codec names a muxer accepts."""
    av = require_av()
    with av.open(io.BytesIO(), "w", format=muxer) as probe:
        return set(probe.supported_codecs)


def even_size(encoding: Encoding, width: int, height: int) -> tuple[int, int]:
    """The frame size the pixel format can hold: odd sizes grow by a row or column where the
    chroma is subsampled (yuv420p)."""
    av = require_av()
    chroma = av.VideoFormat(encoding.pix_fmt, 2, 2).components[1]
    return (width + (width % 2 if chroma.width < 2 else 0),
            height + (height % 2 if chroma.height < 2 else 0))


def pad_edges(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, 3) -> (height, width, 3), repeating the last row and column."""
    extra = ((0, height - frame.shape[0]), (0, width - frame.shape[1]), (0, 0))
    return np.pad(frame, extra, mode="edge") if any(e[1] for e in extra) else frame


def write_segment(path: Path, frames: Iterable[tuple[int, np.ndarray]], encoding: Encoding) -> int:
    """Encode (pts, RGB frame) pairs into ``path`` (an MP4), atomically; returns the frame count.

    The size is the first frame's; odd sizes grow by a row or column (repeated) where the pixel
    format subsamples chroma."""
    av = require_av()
    count, stream = 0, None
    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format=SEGMENT_FORMAT,
                     options=_muxer_options(SEGMENT_FORMAT, encoding.time_base)) as out:
            for pts, image in frames:
                if stream is None:
                    stream = _video_encoder(out, encoding, image)
                frame = pad_edges(image, stream.width, stream.height)
                for packet in stream.encode(_to_frame(frame, pts, encoding)):
                    out.mux(packet)
                count += 1
            for packet in stream.encode() if stream is not None else ():
                out.mux(packet)
    return count


def _muxer_options(muxer: str, time_base: Fraction) -> dict[str, str]:
    """MP4/MOV edit lists count in the movie's timescale (1/1000 s by default), which would
    round a first timestamp that is not a whole millisecond: count in the video's time base."""
    return {"movie_timescale": str(time_base.denominator)} if muxer in ("mp4", "mov") else {}


def _video_encoder(out: Any, encoding: Encoding, first: np.ndarray) -> Any:
    """The output's video stream, sized for ``first`` (H, W, 3)."""
    stream = out.add_stream(encoding.codec, rate=encoding.rate, options=encoding.options)
    stream.width, stream.height = even_size(encoding, first.shape[1], first.shape[0])
    stream.pix_fmt = encoding.pix_fmt
    stream.time_base = stream.codec_context.time_base = encoding.time_base
    for tag, value in encoding.colour.items():
        setattr(stream.codec_context, tag, value)
    return stream


def _to_frame(image: np.ndarray, pts: int, encoding: Encoding) -> Any:
    """RGB (H, W, 3) uint8/uint16 -> a VideoFrame in the encoder's pixel format and colour tags."""
    av = require_av()
    frame = av.VideoFrame.from_ndarray(image, format="rgb48le" if image.dtype == np.uint16 else "rgb24")
    frame.colorspace = encoding.colour["colorspace"]  # the matrix the decoder used, back again
    frame.color_range = encoding.colour["color_range"]
    frame = frame.reformat(format=encoding.pix_fmt)
    frame.pts, frame.time_base = pts, encoding.time_base
    return frame


def join_segments(segments: list[Path], info: VideoInfo, output: Path, layout: str | None) -> None:
    """Remux the encoded segments, in order, and the input's audio into ``output``, atomically;
    the layout goes into the container where it has a place for it."""
    av = require_av()
    muxer = output_format(output)
    with atomic_path(output) as tmp:
        with av.open(str(tmp), "w", format=muxer, options=_muxer_options(muxer, info.time_base)
                     ) as out, open_input(info.path) as source:
            inputs = [av.open(str(s)) for s in segments]
            try:
                video = out.add_stream_from_template(inputs[0].streams.video[0])
                video.time_base = info.time_base
                if layout in MATROSKA_STEREO_MODES and muxer in ("matroska", "webm"):
                    video.metadata["stereo_mode"] = MATROSKA_STEREO_MODES[layout]
                packets = [_video_packets(inputs, video)]
                packets += [_audio_packets(source, source.streams[i], out, output)
                            for i in info.audio]
                for _, _, packet in heapq.merge(*packets, key=lambda item: item[:2]):
                    out.mux(packet)
            finally:
                for container in inputs:
                    container.close()
        if layout in ST3D_MODES and muxer in ("mp4", "mov"):
            add_st3d(tmp, ST3D_MODES[layout])


def _seconds(packet: Any) -> float:
    stamp = packet.dts if packet.dts is not None else packet.pts
    return float(stamp * packet.time_base) if stamp is not None else 0.0


def _video_packets(inputs: list[Any], stream: Any) -> Iterator[tuple[float, int, Any]]:
    """(time, order, packet) of every segment's video packets, retargeted to ``stream``;
    decode timestamps kept increasing across the joins."""
    last = None
    for container in inputs:
        for packet in container.demux(container.streams.video[0]):
            if not packet.size:
                continue
            if last is not None and packet.dts is not None and packet.dts * packet.time_base <= last:
                packet.dts = int(last / packet.time_base) + 1  # only if an encoder's delay varied
            last = packet.dts * packet.time_base if packet.dts is not None else last
            packet.stream = stream
            yield _seconds(packet), 0, packet


def _audio_packets(source: Any, stream: Any, out: Any, output: Path) -> Iterator[tuple[float, int, Any]]:
    """(time, order, packet) of one audio stream: copied, or re-encoded as AAC (Opus for WebM)
    when the output container cannot hold its codec."""
    if stream.codec_context.name in out.supported_codecs:
        target = out.add_stream_from_template(stream)
        return _copied(source, stream, target)
    codec = "aac" if "aac" in out.supported_codecs else "libopus"
    warnings.warn(f"{output}: its container cannot hold {stream.codec_context.name} audio; "
                  f"re-encoded as {codec.removeprefix('lib')}", stacklevel=2)
    target = out.add_stream(codec, rate=stream.codec_context.sample_rate)
    target.layout = stream.codec_context.layout
    return _reencoded(source, stream, target)


def _copied(source: Any, stream: Any, target: Any) -> Iterator[tuple[float, int, Any]]:
    for packet in _own_demux(source, stream):
        if packet.size:
            packet.stream = target
            yield _seconds(packet), 1 + stream.index, packet


def _reencoded(source: Any, stream: Any, target: Any) -> Iterator[tuple[float, int, Any]]:
    for packet in _own_demux(source, stream):  # PyAV resamples and re-frames for the encoder
        for frame in packet.decode():
            for encoded in target.encode(frame):
                yield _seconds(encoded), 1 + stream.index, encoded
    for encoded in target.encode(None):
        yield _seconds(encoded), 1 + stream.index, encoded


def _own_demux(source: Any, stream: Any) -> Iterator[Any]:
    """The packets of one stream, from a container of its own (streams are merged by time)."""
    with open_input(Path(source.name)) as container:
        yield from container.demux(container.streams[stream.index])
