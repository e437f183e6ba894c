"""3D video benchmark: frames per second of ``ipassr infer`` on a side-by-side video, and the share
of the time spent outside the network (decoding, splitting, packing, colour conversion, encoding,
the final remux).

The input is made here: the Cones pair (tests/assets) resized to the eye size, panning a few
pixels per frame, side by side (full-width SBS), H.264 at crf 18, with a sine as AAC audio. The
run is the CLI's own (``prepare_video`` + ``run_video_job``, the shipped weights, default
encoding: H.264 crf 18), with the network's calls timed inside it:

    python bench/video.py                       # 960x540 per eye, x2 and x4, 3 frames each
    python bench/video.py --eye 480x270 --frames 6 --scales 2
    python bench/video.py --device cuda --dtype bfloat16 --frames 30

The time outside the network is what the run took minus the time inside
``StereoSR.super_resolve_tensors`` (measured with the device synchronised), so it is everything a
user waits for that is not super-resolution.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ipassr.data.layouts import join  # noqa: E402
from ipassr.inference.api import load_model  # noqa: E402
from ipassr.inference.video import prepare_video, run_video_job  # noqa: E402

CONES = ROOT / "tests" / "assets" / "data" / "middlebury" / "2003" / "Cones"


def make_sbs_video(path: Path, eye: tuple[int, int], frames: int) -> None:
    """Cones resized to ``eye`` (width, height) plus 8 px of margin, panning 2 px per frame."""
    import av

    width, height = eye
    views = [np.asarray(Image.open(CONES / name).convert("RGB").resize((width + 8, height + 8),
                                                                       Image.BICUBIC))
             for name in ("im2.png", "im6.png")]
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=Fraction(30), options={"crf": "18"})
        video.width, video.height, video.pix_fmt = 2 * width, height, "yuv420p"
        sound = out.add_stream("aac", rate=48000, layout="mono")
        for i in range(frames):
            left, right = (v[4:4 + height, 2 * i % 8:2 * i % 8 + width] for v in views)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(join(left, right, "sbsl")))
            frame = frame.reformat(format="yuv420p")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode())
        wave = 0.3 * np.sin(2 * np.pi * 440 * np.arange(48000 * frames // 30) / 48000)
        chunk = av.AudioFrame.from_ndarray(wave[None].astype(np.float32), format="flt", layout="mono")
        chunk.sample_rate, chunk.pts = 48000, 0
        out.mux(sound.encode(chunk))
        out.mux(sound.encode())


def timed_network(model) -> list[float]:
    """Wrap the model's tensor path so that each call's time is recorded (device synchronised)."""
    calls: list[float] = []
    forward = model.super_resolve_tensors

    def timed(left, right, *args, **kwargs):
        synchronise(model.device)
        start = time.perf_counter()
        result = forward(left, right, *args, **kwargs)
        synchronise(model.device)
        calls.append(time.perf_counter() - start)
        return result

    model.super_resolve_tensors = timed
    return calls


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(eye: tuple[int, int], scale: int, frames: int, device: str, dtype: str,
        batch_size: int) -> dict:
    """One timed run; the first frame's network call (warm-up) is reported apart."""
    model = load_model(scale=scale, device=device, dtype=dtype)
    calls = timed_network(model)
    with tempfile.TemporaryDirectory() as folder:
        source, output = Path(folder) / "sbs.mp4", Path(folder) / "out.mp4"
        make_sbs_video(source, eye, frames)
        start = time.perf_counter()
        job = prepare_video(source, output, layout="sbsl", segment_frames=frames)
        run_video_job(model, job, batch_size=batch_size, progress=False)
        total = time.perf_counter() - start
        size = output.stat().st_size
    network = sum(calls)
    return {"eye": f"{eye[0]}x{eye[1]}", "scale": scale, "frames": frames, "total_s": total,
            "network_s": network, "fps": frames / total, "outside": (total - network) / total,
            "first_call_s": calls[0], "output_bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eye", default="960x540", help="width x height of each eye")
    parser.add_argument("--scales", default="2,4")
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch-size", type=int, default=1)
    args = parser.parse_args()
    from ipassr.inference.fast.attention import subnormals_flushed

    eye = tuple(int(v) for v in args.eye.lower().split("x"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"{args.dtype}, batch {args.batch_size}")
    print("| eye | scale | frames | total s | network s | frames/s | outside the network |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with subnormals_flushed():  # as the CLI runs
        for scale in (int(s) for s in args.scales.split(",")):
            r = run(eye, scale, args.frames, args.device, args.dtype, args.batch_size)
            print(f"| {r['eye']} | x{scale} | {r['frames']} | {r['total_s']:.1f} | "
                  f"{r['network_s']:.1f} | {r['fps']:.3f} | {100 * r['outside']:.1f}% |",
                  flush=True)


if __name__ == "__main__":
    main()
