"""``ipassr infer --input movie.mp4 --output out.mp4``: the video side of ``infer``.

Chosen when ``--input`` is a video container (by its suffix); ``ipassr.inference.video`` does
the work. Everything that can fail is checked before the network loads.
"""

from __future__ import annotations

import argparse

from . import model_from_args
from ..errors import IpassrError
from ..data.video_encode import SEGMENT_FRAMES


def add_video_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that only a video --input uses."""
    group = parser.add_argument_group("video (--input movie.mp4 --output out.mp4; needs "
                                      "ipassr[video])")
    group.add_argument("--video-codec", metavar="ENCODER",
                       help="FFmpeg encoder of the output video (default libx264; libvpx-vp9 "
                            "for .webm), e.g. libx265")
    group.add_argument("--crf", type=int, default=18,
                       help="constant quality of the output video: lower is better and larger, "
                            "0 is lossless with libx264/libx265 (default 18)")
    group.add_argument("--segment-frames", type=int, default=SEGMENT_FRAMES,
                       help="frames per segment: the work is saved segment by segment, so an "
                            "interrupted run loses at most one and the same command continues "
                            f"(default {SEGMENT_FRAMES})")


def run_video(args: argparse.Namespace) -> int:
    """Super-resolve the video --input into --output."""
    from ..devices import env_from_environment
    from ..inference.video import prepare_video, run_video_job  # torch: not for --help
    extra = [flag for flag, value in (("--left", args.left), ("--right", args.right),
                                      ("--output-left", args.output_left),
                                      ("--output-right", args.output_right)) if value is not None]
    if extra:
        raise IpassrError(f"a video --input goes to one --output file; {', '.join(extra)} "
                          "cannot be used with it")
    if args.output is None:
        raise IpassrError(f"{args.input}: a video needs --output FILE (.mp4, .mkv, .mov or .webm)")
    job = prepare_video(args.input, args.output, layout=args.layout,
                        output_layout=args.output_layout, codec=args.video_codec, crf=args.crf,
                        segment_frames=args.segment_frames)
    process = env_from_environment()  # under torchrun, every WORLD_SIZE-th segment from RANK
    if not 0 <= process.rank < process.world_size:
        raise IpassrError(f"RANK={process.rank} / WORLD_SIZE={process.world_size}: not a valid "
                          "torchrun process")
    device = (f"cuda:{process.local_rank}" if args.device == "cuda" and process.distributed
              else args.device)
    model = model_from_args(args, device=device, compile=args.compile)
    done = run_video_job(model, job, batch_size=args.batch_size, rank=process.rank,
                         world=process.world_size)
    if done["joined"]:
        print(f"wrote {args.output} ({job.info.frames} frames, x{model.scale}, "
              f"{job.stored_layout or 'anaglyph'})")
    return 0

