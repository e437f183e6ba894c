"""Graft one weights file's upsampler onto another's trunk and biPAM: a start for training at a new scale.

Usage: python tools/graft_upsampler.py TRUNK_WEIGHTS UPSAMPLER_WEIGHTS OUTPUT
e.g. the shipped x4 trunk and biPAM under the x2 upsampler shipped before (recipes/README.md):
     python tools/graft_upsampler.py x4.safetensors x2.safetensors x4-under-x2-upsampler.safetensors
The output network has UPSAMPLER_WEIGHTS' scale; every tensor but the upsampler's comes from
TRUNK_WEIGHTS (which may be of another scale), the upsampler's from UPSAMPLER_WEIGHTS.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ipassr.checkpoint import load_network, read_state_dict, save_weights, transfer_into  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trunk", type=Path)
    parser.add_argument("upsampler", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    network = load_network(args.upsampler)
    trunk, _ = read_state_dict(args.trunk)
    kept = transfer_into(network, {k: v for k, v in trunk.items() if not k.startswith("upsampler.")},
                         args.trunk)
    missing = [k for k in kept if not k.startswith("upsampler.")]
    if missing:
        print(f"{args.trunk}: has no {', '.join(missing[:3])} (left as in {args.upsampler})")
    save_weights(network, args.output, {"provenance": f"trunk and biPAM of {args.trunk.name}, "
                                                      f"upsampler of {args.upsampler.name}"})
    print(f"wrote {args.output} (x{network.scale})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
