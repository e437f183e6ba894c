"""Super-resolving a stereo video: ``super_resolve_video``, resumable and split over processes.

The frames are cut into segments of ``segment_frames``. Each segment is decoded, split into its
two views, super-resolved ``batch_size`` frames at a time through ``StereoSR``'s batched tensor
path, joined in the output layout, encoded, and written atomically into a work folder beside the
output (``.<output name>.ipassr-work``). Memory holds one batch, never the video. An interrupted
run (Ctrl-C, SIGTERM) leaves only whole segments; the same command run again computes only the
missing ones. When every segment is there they are remuxed, without re-encoding, with the input's
audio into the output, and the work folder is removed. Under ``torchrun`` process k takes every
k-th segment; the first process joins them once all are written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from ..data.io import PathLike, atomic_path, check_writable_folder
from ..data.layouts import ANAGLYPH, Layout, anaglyph, convert_views, get_layout, join, layout_names, split
from ..data.video import VideoInfo, decoded_frames, output_format, probe_video
from ..data.video_encode import SEGMENT_FRAMES, Encoding, choose_encoding, join_segments, write_segment
from ..errors import IpassrError
from .api import StereoSR

WAIT_SECONDS = 2.0  # how often the joining process looks for the other processes' segments


@dataclass(frozen=True)
class VideoPlan:
    """Everything a run (and its resumption) must agree on; stored in the work folder."""

    input: str
    input_bytes: int
    input_mtime_ns: int
    frames: int
    network: str  # its name, precision and a hash of its weights
    scale: int
    layout: str
    output_layout: str
    encoding: str
    segment_frames: int

    def bounds(self, segment: int) -> tuple[int, int]:
        """The [first, end) frame indices of a segment."""
        return segment * self.segment_frames, min(self.frames, (segment + 1) * self.segment_frames)


@dataclass(frozen=True)
class VideoJob:
    """A checked video run: the input, where it goes, how, and the plan the segments follow."""

    info: VideoInfo
    output: Path
    source: Layout
    target: Layout | str  # a layout, or ANAGLYPH
    encoding: Encoding
    segment_frames: int

    @property
    def work(self) -> Path:
        """Where the segments are kept until they are joined."""
        return self.output.parent / f".{self.output.name}.ipassr-work"

    def plan(self, model: StereoSR) -> VideoPlan:
        stat = self.info.path.stat()
        target = self.target if isinstance(self.target, str) else self.target.name
        return VideoPlan(str(self.info.path.resolve()), stat.st_size, stat.st_mtime_ns,
                         self.info.frames, network_fingerprint(model), model.scale,
                         self.source.name, target,
                         json.dumps(asdict(self.encoding), default=str), self.segment_frames)

    @property
    def segments(self) -> int:
        return -(-self.info.frames // self.segment_frames)

    @property
    def stored_layout(self) -> str | None:
        """The layout to write into the container: a full-size name (containers do not tell
        full from half size), None for an anaglyph."""
        if self.target == ANAGLYPH:
            return None
        return self.target.full.name if self.target.half else self.target.name


def prepare_video(input: PathLike, output: PathLike, *, layout: str | Layout | None = None,
                  output_layout: str | None = None, codec: str | None = None, crf: int = 18,
                  segment_frames: int = SEGMENT_FRAMES) -> VideoJob:
    """Check everything that can fail before any computing: the input (a readable video with a
    video stream, a layout that splits its frames), the output (container, codec, place)."""
    input, output = Path(input), Path(output)
    if segment_frames < 1:
        raise IpassrError(f"--segment-frames must be at least 1, got {segment_frames}")
    info = probe_video(input)
    source = input_layout(info, layout)
    target = ANAGLYPH if output_layout == ANAGLYPH else get_layout(output_layout or source)
    encoding = choose_encoding(info, output, codec, crf)
    check_output(input, output)
    return VideoJob(info, output, source, target, encoding, segment_frames)


def super_resolve_video(model: StereoSR, input: PathLike, output: PathLike, *,
                        batch_size: int = 1, rank: int = 0, world: int = 1, progress: bool = True,
                        **options) -> dict:
    """Super-resolve a stereo video file into ``output``; returns what was done.

    ``options`` are ``prepare_video``'s: ``layout`` (default: what the container says),
    ``output_layout`` (default: the input's; ``anaglyph`` for red-cyan), ``codec``, ``crf``,
    ``segment_frames``. Under torchrun give each process its ``rank`` and the ``world`` size.
    """
    return run_video_job(model, prepare_video(input, output, **options), batch_size=batch_size,
                         rank=rank, world=world, progress=progress)


def run_video_job(model: StereoSR, job: VideoJob, *, batch_size: int = 1, rank: int = 0,
                  world: int = 1, progress: bool = True) -> dict:
    """Compute this process's missing segments of a prepared job; the first process joins."""
    if batch_size < 1:
        raise IpassrError(f"--batch-size must be at least 1, got {batch_size}")
    plan = job.plan(model)
    prepare_work_folder(job.work, plan, rank)
    share = [s for s in range(job.segments) if s % world == rank]
    todo = [s for s in share if not segment_path(job.work, s).is_file()]
    where = f" (process {rank + 1} of {world})" if world > 1 else ""
    if len(todo) < len(share):
        print(f"{len(share) - len(todo)} of {len(share)} segments already done in {job.work}: "
              f"resuming{where}")
    frames = sum(plan.bounds(s)[1] - plan.bounds(s)[0] for s in todo)
    with tqdm(total=frames, desc=f"super-resolving{where}", unit="frame",
              disable=not progress) as bar:
        for segment, rows in zip(todo, segment_frames_of(job.info, plan, todo)):
            arranged = arranged_frames(model, rows, job.source, job.target, batch_size, bar)
            write_segment(segment_path(job.work, segment), arranged, job.encoding)
    if rank != 0:
        print(f"wrote {len(todo)} segment(s){where}; process 1 joins them into {job.output}")
        return {"segments": len(todo), "frames": frames, "joined": False}
    wait_for_segments(job.work, job.segments)
    join_segments([segment_path(job.work, s) for s in range(job.segments)], job.info,
                  job.output, job.stored_layout)
    shutil.rmtree(job.work, ignore_errors=True)
    return {"segments": len(todo), "frames": frames, "joined": True}


def network_fingerprint(model: StereoSR) -> str:
    """The network's name and precision and a hash of its weights: segments of other weights
    are never joined with this run's."""
    digest = hashlib.sha1()
    for name, tensor in model.network.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return f"{model.label} {str(model.dtype).removeprefix('torch.')} {digest.hexdigest()}"


def input_layout(info: VideoInfo, layout: str | Layout | None) -> Layout:
    """The given layout, else the container's; one line naming the choices when neither is
    there; refuses a frame the layout cannot split."""
    if layout is None and info.layout is None:
        raise IpassrError(f"{info.path}: its container does not say how the two views are stored; "
                          f"give --layout (one of: {layout_names()})")
    chosen = get_layout(layout if layout is not None else info.layout)
    split(np.broadcast_to(np.zeros(1, np.uint8), (info.height, info.width)), chosen,
          name=str(info.path))  # one line when the frame cannot hold two views this way
    return chosen


def check_output(input: Path, output: Path) -> None:
    """Refuse an output that is the input, a folder, or in a place that cannot be written."""
    output_format(output)
    if output.exists() and os.path.samefile(input, output):
        raise IpassrError(f"{output}: is also the input; refusing to overwrite it")
    if output.is_dir():
        raise IpassrError(f"{output}: is a folder; give a video file name")
    check_writable_folder(output.parent)


def segment_path(work: Path, segment: int) -> Path:
    return work / f"segment-{segment:06d}.mp4"


def prepare_work_folder(work: Path, plan: VideoPlan, rank: int) -> None:
    """Create the work folder, or keep it when it holds segments of this same job; segments of
    another job (other input, weights or options) are removed, with a note."""
    plan_file = work / "plan.json"
    wanted = json.dumps(asdict(plan), indent=1)
    if plan_file.is_file() and plan_file.read_text() != wanted and rank == 0:
        print(f"ipassr: note: {work} holds segments of another run (other input, weights or "
              "options); starting over", file=sys.stderr)
        for old in work.glob("segment-*.mp4"):
            old.unlink(missing_ok=True)
    if not plan_file.is_file() or plan_file.read_text() != wanted:
        with atomic_path(plan_file) as tmp:
            tmp.write_text(wanted)


def segment_frames_of(info: VideoInfo, plan: VideoPlan, segments: list[int]
                      ) -> Iterator[Iterator[tuple[int, np.ndarray]]]:
    """For each segment, in order, an iterator of its (pts, frame) pairs; one decoding pass
    over the video (frames of other segments are decoded, not converted)."""
    wanted = {i for s in segments for i in range(*plan.bounds(s))}
    frames = decoded_frames(info, wanted.__contains__)
    for segment in segments:
        yield _frames_of_segment(frames, *plan.bounds(segment), info.path)


def _frames_of_segment(frames: Iterator[tuple[int, int, np.ndarray]], first: int, end: int,
                       path: Path) -> Iterator[tuple[int, np.ndarray]]:
    """(pts, frame) of frames first..end-1; the video ending early is an error (so that the
    segment being written is dropped)."""
    for expected in range(first, end):
        index, pts, image = next(frames, (None, None, None))
        if index != expected:
            raise IpassrError(f"{path}: ended or skipped at frame {expected + 1} (damaged?)")
        yield pts, image


def arranged_frames(model: StereoSR, frames: Iterable[tuple[int, np.ndarray]], source: Layout,
                    target: Layout | str, batch_size: int, bar: tqdm
                    ) -> Iterator[tuple[int, np.ndarray]]:
    """(pts, output frame): each input frame split, super-resolved in batches, and joined in
    the target layout (or mixed into an anaglyph)."""
    for batch in batches(frames, batch_size):
        pts = [p for p, _ in batch]
        lefts, rights = upscale_views(model, [split(image, source) for _, image in batch])
        for stamp, left, right in zip(pts, lefts, rights):
            left, right = convert_views(left, right, source, None if target == ANAGLYPH else target)
            yield stamp, anaglyph(left, right) if target == ANAGLYPH else join(left, right, target)
            bar.update(1)


def batches(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def upscale_views(model: StereoSR, pairs: list[tuple[np.ndarray, np.ndarray]]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) views (h, w, 3) uint8/uint16 -> SR views (B, sh, sw, 3) of the same dtype,
    through the network's batched tensor path; rounded to the nearest level."""
    dtype = pairs[0][0].dtype
    peak = float(np.iinfo(dtype).max)

    def batch(views: list[np.ndarray]) -> torch.Tensor:
        stacked = torch.from_numpy(np.stack(views).astype(np.float32))  # (B, h, w, 3)
        return stacked.permute(0, 3, 1, 2).div_(peak)

    sr_left, sr_right = model.super_resolve_tensors(batch([l for l, _ in pairs]),
                                                    batch([r for _, r in pairs]))

    def back(views: torch.Tensor) -> np.ndarray:
        levels = views.clamp(0, 1).mul(peak).round().permute(0, 2, 3, 1).cpu().numpy()
        return levels.astype(dtype)

    return back(sr_left), back(sr_right)


def wait_for_segments(work: Path, segments: int,
                      sleep: Callable[[float], None] = time.sleep) -> None:
    """Wait until every segment is in the work folder (other processes may still write theirs)."""
    told = False
    while missing := [s for s in range(segments) if not segment_path(work, s).is_file()]:
        if not told:
            print(f"waiting for {len(missing)} segment(s) from the other processes")
            told = True
        sleep(WAIT_SECONDS)
