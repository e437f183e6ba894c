"""Samples/s of one iPASSR training step: the trainer's step against a plain eager step.

    python bench/train_step.py                      # CPU: batch 36, x4, 30x90 LR patches
    python bench/train_step.py --device cuda        # GPU: also bf16 autocast, channels_last, compile
    python bench/train_step.py --batch 8 --repeats 2 --variants eager,trainer,channels_last

The baseline ("eager") is the straightforward step: fp32 network in train mode, the five losses,
``zero_grad``/``backward``/``Adam.step``, nothing else. The other variants run
``ipassr.train.trainer.Trainer.train_step`` (the step ``ipassr train`` runs) with the speed options of
the config switched on. Every variant starts from the same weights and batch; the time of each
step includes a device synchronisation. Prints one Markdown table row per variant.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ipassr.models.losses import ipassr_loss  # noqa: E402
from ipassr.models.ipassr import IPASSR  # noqa: E402
from ipassr.train.config import TrainConfig  # noqa: E402
from ipassr.train.data import ArrayPatches  # noqa: E402
from ipassr.train.trainer import Trainer  # noqa: E402

VARIANTS = {
    "eager": None,  # the baseline, written out below
    "trainer": {},
    "channels_last": {"channels_last": True},
    "bf16": {"amp": "bf16"},
    "bf16+channels_last": {"amp": "bf16", "channels_last": True},
    "bf16+channels_last+compile": {"amp": "bf16", "channels_last": True, "compile": True},
    "compile": {"compile": True},
}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_patches(batch: int, scale: int, height: int, width: int) -> ArrayPatches:
    """A batch of uint8 patches (random content: speed does not depend on it)."""
    rng = np.random.default_rng(0)
    lr = [rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8) for _ in range(2)]
    hr = [rng.integers(0, 256, (batch, height * scale, width * scale, 3), dtype=np.uint8)
          for _ in range(2)]
    return ArrayPatches(*lr, *hr, scale=scale, name="random")


def eager_step_fn(inputs, scale: int, device: torch.device):
    """The plain step: what a first, straightforward training loop does."""
    torch.manual_seed(0)
    model = IPASSR(scale).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.9, 0.999))
    lr_left, lr_right, hr_left, hr_right = inputs

    def step() -> float:
        sr_left, sr_right, maps = model(lr_left, lr_right, return_attention=True)
        loss = ipassr_loss(sr_left, sr_right, hr_left, hr_right, lr_left, lr_right, maps, scale)
        optimizer.zero_grad()
        loss["total"].backward()
        optimizer.step()
        return loss["total"].item()

    return step


def trainer_step_fn(source: ArrayPatches, options: dict, device: torch.device, workdir: Path):
    """The step of ``ipassr train`` with the given speed options."""
    config = TrainConfig(scale=source.scale, batch_size=len(source), workers=0, hflip=False,
                         vflip=False, device=str(device), tensorboard=False, **options)
    trainer = Trainer(config, workdir / "_".join(sorted(options)) or "plain", source=source,
                      progress=False)
    inputs = next(trainer.batches())
    return lambda: trainer.train_step(inputs)["total"]


def time_steps(step, device: torch.device, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        step()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=36)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--height", type=int, default=30)
    parser.add_argument("--width", type=int, default=90)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--variants", help="comma-separated, from: " + ", ".join(VARIANTS))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.variants:
        names = args.variants.split(",")
    elif device.type == "cuda":
        names = ["eager", "trainer", "channels_last", "bf16+channels_last",
                 "bf16+channels_last+compile"]
        torch.backends.cudnn.benchmark = True
    else:
        names = ["eager", "trainer", "channels_last"]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}")
    source = random_patches(args.batch, args.scale, args.height, args.width)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"# train step, batch {args.batch}, x{args.scale}, LR {args.height}x{args.width}, "
          f"{device_name}, torch {torch.__version__}; median of {args.repeats} after {args.warmup} warm-up")
    print("| variant | s/step | samples/s | vs eager |")
    print("| --- | ---: | ---: | ---: |")
    baseline = None
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            if VARIANTS[name] is None:
                trainer_inputs = Trainer(
                    TrainConfig(scale=args.scale, batch_size=args.batch, workers=0, hflip=False,
                                vflip=False, device=str(device), tensorboard=False),
                    Path(workdir) / "inputs", source=source, progress=False)
                step = eager_step_fn(next(trainer_inputs.batches()), args.scale, device)
            else:
                step = trainer_step_fn(source, VARIANTS[name], device, Path(workdir))
            seconds = statistics.median(time_steps(step, device, args.warmup, args.repeats))
            baseline = baseline or seconds
            print(f"| {name} | {seconds:.3f} | {args.batch / seconds:.1f} | "
                  f"{baseline / seconds:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
