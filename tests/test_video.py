"""3D video through ``ipassr infer --input movie.mp4`` (PyAV, the ``video`` extra).

The videos are made here from the real Cones pair in tests/assets: a few small crops that move
from frame to frame, side by side, with a 440 Hz sine as AAC audio. Encoded losslessly (crf 0),
so every output frame must equal per-frame inference of the decoded input after the same
RGB -> yuv420p conversion, exactly.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ipassr.cli import main
from ipassr.data.layouts import join, split

av = pytest.importorskip("av")

CONES = Path(__file__).parent / "assets" / "data" / "middlebury" / "2003" / "Cones"
RATE = Fraction(30000, 1001)
EYE = (32, 48)  # height, width of each view
FRAMES = 4


def cones_views(frames: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(left, right) crops of Cones that pan 3 px per frame."""
    left = np.asarray(Image.open(CONES / "im2.png").convert("RGB"))
    right = np.asarray(Image.open(CONES / "im6.png").convert("RGB"))
    h, w = EYE
    return [(left[150:150 + h, 200 + 3 * i:200 + 3 * i + w], right[150:150 + h, 200 + 3 * i:200 + 3 * i + w])
            for i in range(frames)]


def make_video(path: Path, layout: str = "sbsl", frames: int = FRAMES, audio: str | None = "aac",
               metadata: dict | None = None) -> None:
    """A short stereo video of Cones crops in ``layout``, with a sine track in ``audio``."""
    images = [join(left, right, layout) for left, right in cones_views(frames)]
    write_video(path, images, audio=audio, metadata=metadata)


def write_video(path: Path, images: list[np.ndarray], audio: str | None = None,
                pix_fmt: str = "yuv420p", metadata: dict | None = None) -> None:
    """RGB images as lossless H.264 (BT.709, limited range), plus a 440 Hz sine in ``audio``."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=RATE, options={"crf": "0"})
        video.width, video.height, video.pix_fmt = images[0].shape[1], images[0].shape[0], pix_fmt
        video.codec_context.colorspace = video.codec_context.color_primaries = 1  # BT.709
        video.codec_context.color_trc, video.codec_context.color_range = 1, 1
        video.metadata.update(metadata or {})
        sound = out.add_stream(audio, rate=48000, layout="mono") if audio else None
        for i, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image))
            frame.colorspace, frame.color_range = 1, 1
            frame = frame.reformat(format=pix_fmt)
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if sound is not None:
            samples = int(48000 * len(images) / RATE)
            wave = 0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / 48000)
            chunk = av.AudioFrame.from_ndarray(wave[None].astype(np.float32), format="flt",
                                               layout="mono")  # PyAV converts it for the encoder
            chunk.sample_rate, chunk.pts = 48000, 0
            out.mux(sound.encode(chunk))
            out.mux(sound.encode())


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def packets(path: Path, kind: str) -> list[tuple]:
    """(pts in seconds, bytes) of a stream's packets."""
    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        return [(float(p.pts * p.time_base), bytes(p)) for p in container.demux(stream) if p.size]


def through_yuv420(image: np.ndarray) -> np.ndarray:
    """What a lossless yuv420p encode of an RGB frame (BT.709, limited range) decodes to."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image))
    frame.colorspace, frame.color_range = 1, 1
    return frame.reformat(format="yuv420p").to_ndarray(format="rgb24")


@pytest.fixture(scope="module")
def model():
    from ipassr.inference.api import load_model
    return load_model(scale=2)


@pytest.fixture(scope="module")
def sbs_run(tmp_path_factory):
    """A 4-frame SBS MP4 with audio, super-resolved by the CLI in two segments."""
    folder = tmp_path_factory.mktemp("video")
    source, output = folder / "movie.mp4", folder / "out.mp4"
    make_video(source)
    assert main(["infer", "--scale", "2", "--input", str(source), "--layout", "sbsl",
                 "--output", str(output), "--crf", "0", "--segment-frames", "2"]) == 0
    return source, output


def test_video_frames_are_per_frame_inference(sbs_run, model):
    source, output = sbs_run
    expected = [through_yuv420(join(*model.super_resolve(*split(frame, "sbsl")), "sbsl"))
                for frame in decoded(source)]
    got = decoded(output)
    assert len(got) == FRAMES
    for want, have in zip(expected, got):
        assert have.shape == (2 * EYE[0], 4 * EYE[1], 3)
        np.testing.assert_array_equal(have, want)


def test_video_keeps_timing_audio_colour_and_writes_the_layout(sbs_run):
    source, output = sbs_run
    with av.open(str(source)) as a, av.open(str(output)) as b:
        va, vb = a.streams.video[0], b.streams.video[0]
        assert vb.average_rate == va.average_rate == RATE
        assert vb.time_base == va.time_base
        assert abs(b.duration - a.duration) < 1000  # microseconds: within 1 ms
        for tag in ("color_primaries", "color_trc", "colorspace", "color_range"):
            assert getattr(vb.codec_context, tag) == getattr(va.codec_context, tag) == 1
        side = next(b.decode(vb)).side_data
        assert bytes(side["STEREO3D"])[:8] == bytes([1, 0, 0, 0, 0, 0, 0, 0])  # SBS, left first
    assert packets(output, "audio") == packets(source, "audio")  # copied, timestamps and all
    assert [t for t, _ in packets(output, "video")] == [t for t, _ in packets(source, "video")]
    assert not list(output.parent.glob(".*"))  # no work folder, no temporary file


def test_layout_read_from_the_container_and_audio_reencoded_for_webm(tmp_path, model):
    source, output = tmp_path / "tb.mkv", tmp_path / "out.webm"
    make_video(source, layout="tbr", frames=2, audio="pcm_s16le",
               metadata={"stereo_mode": "bottom_top"})
    assert main(["infer", "--scale", "2", "--input", str(source), "--output", str(output),
                 "--crf", "0"]) == 0  # no --layout: Matroska's StereoMode says tbr
    with av.open(str(output)) as result:
        assert result.streams.video[0].codec_context.name == "vp9"
        assert result.streams.video[0].metadata.get("stereo_mode") == "bottom_top"
        assert result.streams.audio[0].codec_context.name == "opus"  # WebM refuses PCM
        assert result.streams.video[0].frames in (0, 2)
    frames = decoded(output)
    assert len(frames) == 2 and frames[0].shape == (4 * EYE[0], 2 * EYE[1], 3)


def test_interrupted_video_run_resumes_with_only_the_missing_segments(sbs_run, tmp_path,
                                                                        monkeypatch):
    source, complete = sbs_run
    output = tmp_path / "out.mp4"
    command = ["infer", "--scale", "2", "--input", str(source), "--layout", "sbsl",
               "--output", str(output), "--crf", "0", "--segment-frames", "1"]
    import ipassr.inference.video as pipeline

    written, computed = [], []
    original_write = pipeline.write_segment

    def write_then_stop(path, frames, encoding):
        count = original_write(path, frames, encoding)
        written.append(path.name)
        if len(written) == 2:
            raise KeyboardInterrupt  # Ctrl-C (SIGTERM is turned into the same) after 2 segments
        return count

    monkeypatch.setattr(pipeline, "write_segment", write_then_stop)
    assert main(command) == 130
    work = tmp_path / ".out.mp4.ipassr-work"
    assert sorted(p.name for p in work.glob("segment-*")) == written  # whole segments only
    assert not output.exists() and not list(work.glob(".*"))

    monkeypatch.setattr(pipeline, "write_segment", original_write)
    original_upscale = pipeline.upscale_views
    monkeypatch.setattr(pipeline, "upscale_views",
                        lambda model, pairs: computed.append(len(pairs)) or original_upscale(model, pairs))
    assert main(command) == 0
    assert sum(computed) == FRAMES - 2  # only the two missing frames
    for have, want in zip(decoded(output), decoded(complete), strict=True):
        np.testing.assert_array_equal(have, want)
    assert not work.exists()


def test_segments_are_split_over_torchrun_processes(sbs_run, tmp_path, monkeypatch):
    source, complete = sbs_run
    output = tmp_path / "out.mkv"
    command = ["infer", "--scale", "2", "--input", str(source), "--layout", "sbsl",
               "--output", str(output), "--crf", "0", "--segment-frames", "1"]
    import ipassr.inference.video as pipeline

    computed: list[int] = []
    original_upscale = pipeline.upscale_views
    monkeypatch.setattr(pipeline, "upscale_views",
                        lambda model, pairs: computed.append(len(pairs)) or original_upscale(model, pairs))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(command) == 0 and not output.exists()  # process 2: segments 1 and 3, no join
    assert sum(computed) == 2
    monkeypatch.setenv("RANK", "0")
    assert main(command) == 0  # process 1: segments 0 and 2, then the join
    assert sum(computed) == FRAMES
    for have, want in zip(decoded(output), decoded(complete), strict=True):
        np.testing.assert_array_equal(have, want)
    with av.open(str(output)) as result:
        assert result.streams.video[0].metadata.get("stereo_mode") == "left_right"


def error_of(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ipassr: error: ")
    return lines[0]


def test_bad_videos_are_one_line_and_write_nothing(tmp_path, capsys):
    good = tmp_path / "movie.mp4"
    make_video(good, frames=2)
    silent = tmp_path / "sound.mp4"
    with av.open(str(silent), "w") as out:
        sound = out.add_stream("aac", rate=48000)
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 4800), np.float32), format="flt", layout="mono")
        chunk.sample_rate = 48000
        out.mux(sound.encode(chunk))
        out.mux(sound.encode())
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    longer = tmp_path / "long.mkv"
    write_video(longer, [join(*views, "sbsl") for views in cones_views(FRAMES)])
    with av.open(str(longer)) as container:  # Matroska cut after its first video packet
        second = [p.pos for p in container.demux(video=0) if p.size][1]
    cut_mkv = tmp_path / "cut.mkv"
    cut_mkv.write_bytes(longer.read_bytes()[:second])
    longer.unlink()
    odd = tmp_path / "odd.mkv"  # 95 px wide: yuv444p, as libx264 takes no odd yuv420p size
    left, right = cones_views(1)[0]
    write_video(odd, [np.hstack([left, right[:, 1:]])], pix_fmt="yuv444p")
    out = tmp_path / "out.mp4"
    run = ["infer", "--scale", "2", "--output", str(out), "--input"]
    assert "has no video stream" in error_of(capsys, run + [str(silent), "--layout", "sbsl"])
    assert "truncated" in error_of(capsys, run + [str(truncated), "--layout", "sbsl"])
    assert "truncated or damaged after 1 frames" in error_of(capsys, run + [str(cut_mkv), "--layout", "sbsl"])
    assert "(95 px) is odd" in error_of(capsys, run + [str(odd), "--layout", "sbsl"])
    assert "unknown stereo layout 'sbsx'" in error_of(capsys, run + [str(good), "--layout", "sbsx"])
    assert "give --layout" in error_of(capsys, run + [str(good)])
    webm = ["infer", "--scale", "2", "--input", str(good), "--layout", "sbsl", "--output",
            str(tmp_path / "out.webm"), "--video-codec", "libx264"]
    assert "cannot hold libx264 video" in error_of(capsys, webm)
    assert "refuses --crf -5" in error_of(capsys, run + [str(good), "--layout", "sbsl", "--crf", "-5"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["movie.mp4", "sound.mp4", "cut.mp4", "cut.mkv", "odd.mkv"])


def test_work_folder_of_another_run_is_emptied(tmp_path, capsys):
    from dataclasses import replace

    from ipassr.inference.video import VideoPlan, prepare_work_folder, segment_path

    plan = VideoPlan("in.mp4", 10, 1, 4, "iPASSR float32 abc", 2, "sbsl", "sbsl", "{}", 2)
    prepare_work_folder(tmp_path, plan, rank=0)
    segment_path(tmp_path, 0).write_bytes(b"done")
    prepare_work_folder(tmp_path, plan, rank=0)  # the same run: kept
    assert segment_path(tmp_path, 0).is_file()
    prepare_work_folder(tmp_path, replace(plan, network="iPASSR float32 other"), rank=0)
    assert not segment_path(tmp_path, 0).exists()
    assert "starting over" in capsys.readouterr().err


def test_st3d_goes_only_where_moov_is_last(tmp_path):
    from ipassr.data.mp4_boxes import add_st3d

    first, last = tmp_path / "first.mp4", tmp_path / "last.mp4"
    for path, flags in ((first, "+faststart"), (last, "")):
        with av.open(str(path), "w", options={"movflags": flags} if flags else {}) as out:
            video = out.add_stream("libx264", rate=30)
            video.width, video.height, video.pix_fmt = 32, 16, "yuv420p"
            out.mux(video.encode(av.VideoFrame(32, 16, "yuv420p")))
            out.mux(video.encode())
    before = first.read_bytes()
    assert not add_st3d(first, 1) and first.read_bytes() == before
    assert add_st3d(last, 1)
    with av.open(str(last)) as container:
        assert bytes(next(container.decode(video=0)).side_data["STEREO3D"])[:4] == bytes([2, 0, 0, 0])
