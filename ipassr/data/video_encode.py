"""Writing 3D video through PyAV: segments encoded atomically, then joined with the audio.

``choose_encoding`` checks the output's container and encoder before any computing;
``write_segment`` encodes frames into one small MP4, atomically; ``join_segments`` remuxes the
segments, without re-encoding, together with the input's audio into the output and writes the
layout where the container has a place for it (Matroska ``StereoMode``, MP4/MOV ``st3d``).
Timestamps pass through unchanged, so the frame rate, the time base (where the container can
hold it) and the audio sync are the input's.
"""

from __future__ import annotations

import heapq
import io
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from ..errors import IpassrError
from .io import PathLike, atomic_path
from .mp4_boxes import add_st3d
from .video import VideoInfo, open_input, output_format, reason, require_av

SEGMENT_FRAMES = 30  # a segment is the most an interruption loses (and one key frame each)

DEFAULT_CODECS = {"webm": "libvpx-vp9"}  # else libx264
SEGMENT_FORMAT = "mp4"  # keeps any time base exactly (Matroska rounds to milliseconds)
MATROSKA_STEREO_MODES = {"sbsl": "left_right", "sbsr": "right_left", "tbl": "top_bottom",
                         "tbr": "bottom_top"}
ST3D_MODES = {"sbsl": 2, "tbl": 1}  # st3d (Spherical Video V2) has no right-eye-first modes


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
    encoding = Encoding(codec, crf, pix_fmt, info.rate, info.time_base, info.colour)
    _try_encoder(encoding, output)
    return encoding


def _try_encoder(encoding: Encoding, output: PathLike) -> None:
    """Open the encoder once on a small frame size, so that options it refuses (a --crf out of
    its range) fail now, in one line."""
    av = require_av()
    context = av.CodecContext.create(encoding.codec, "w")
    context.width, context.height, context.pix_fmt = 64, 64, encoding.pix_fmt
    context.time_base, context.framerate = encoding.time_base, encoding.rate
    context.options = encoding.options
    try:
        context.open()
    except av.error.FFmpegError as error:
        raise IpassrError(f"{output}: {encoding.codec} refuses --crf {encoding.crf} "
                          f"({reason(error)})") from None


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
