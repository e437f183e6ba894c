"""biPAM on training batches: attention peak, mean valid mask and biPAM's share of the gradient.

    python tools/attention_diagnostics.py WEIGHTS PATCHES [--count 16] [--upsampler-from W]

``--upsampler-from`` puts another file's upsampler under WEIGHTS' trunk and biPAM (e.g. the x4
weights under the x2 upsampler). One training-mode forward and backward of ``count`` random
patches with all five losses; prints one JSON line (docs/attention-learning.md).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from ipassr.models.checkpoint import load_network, read_state_dict
from ipassr.models.losses import ipassr_loss
from ipassr.train.data import open_patches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights")
    parser.add_argument("patches")
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--upsampler-from")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    if args.upsampler_from:
        network = load_network(args.upsampler_from)
        trunk, _ = read_state_dict(args.weights)
        network.load_state_dict({**network.state_dict(), **{
            k: v for k, v in trunk.items() if not k.startswith("upsampler.")}})
    else:
        network = load_network(args.weights)
    source = open_patches(args.patches)
    rng = np.random.default_rng(args.seed)
    chosen = np.sort(rng.choice(len(source), min(args.count, len(source)), replace=False))
    lr_left, lr_right, hr_left, hr_right = (
        torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float() / 255
        for a in source.batch(chosen))
    network.train()
    sr_left, sr_right, maps = network(lr_left, lr_right, return_attention=True)
    terms = ipassr_loss(sr_left, sr_right, hr_left, hr_right, lr_left, lr_right, maps,
                        network.scale)
    terms["total"].backward()

    def norm(prefix: str = "") -> float:
        return float(sum(p.grad.norm() ** 2 for n, p in network.named_parameters()
                         if n.startswith(prefix) and p.grad is not None) ** 0.5)

    print(json.dumps({
        "attention_peak": float(maps.right_to_left.detach().amax(-1).mean()),
        "valid_mean": float(maps.valid_left.mean()),
        "bipam_gradient_share": norm("attention.") / norm(),
        **{f"loss_{k}": round(float(v), 5) for k, v in terms.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
