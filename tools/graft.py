"""Graft named parts of one weights file onto another network: a start for training at a new scale.

Usage: python tools/graft.py DONOR_WEIGHTS BASE_WEIGHTS OUTPUT [--parts PART,PART,...]
The output network is BASE_WEIGHTS' (its scale and variant) with the named top-level parts taken
from DONOR_WEIGHTS (which may be of another scale); by default every part but the upsampler.
e.g. the shipped x4 trunk and biPAM under the x2 upsampler shipped before (recipes/README.md):
     python tools/graft.py x4.safetensors x2.safetensors x4-under-x2-upsampler.safetensors
     the x4 network's feature extraction and biPAM in the shipped x2 network (the parts its
     x2 training keeps frozen):
     python tools/graft.py x4.safetensors x2.safetensors out.safetensors \\
         --parts feature_conv,feature_group,attention
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterable

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ipassr.models.checkpoint import load_network, read_state_dict, save_weights  # noqa: E402
from ipassr.errors import IpassrError  # noqa: E402
from ipassr.models.ipassr import IPASSR  # noqa: E402
from ipassr.train.setup import named_parts  # noqa: E402


def part_of(name: str) -> str:
    """The top-level part a tensor belongs to: 'attention.b1.weight' -> 'attention'."""
    return name.split(".", 1)[0]


def graft(network: IPASSR, donor: dict[str, torch.Tensor], parts: Iterable[str]) -> None:
    """Load ``donor``'s tensors of the top-level ``parts`` into ``network`` (the rest kept);
    IpassrError, naming a few of them, when they do not fit its tensors one for one."""
    parts = set(parts)
    state = network.state_dict()
    taken = {k: v for k, v in donor.items() if part_of(k) in parts}
    misfits = sorted(k for k, v in taken.items() if k not in state or v.shape != state[k].shape)
    misfits += sorted(k for k in state if part_of(k) in parts and k not in taken)
    if misfits:
        raise IpassrError(f"{len(misfits)} tensors differ, e.g. {', '.join(misfits[:3])}")
    network.load_state_dict({**state, **taken}, strict=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("donor", type=Path)
    parser.add_argument("base", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--parts", help="comma-separated top-level parts to take from DONOR "
                                        "(default: every part DONOR has but the upsampler)")
    args = parser.parse_args()
    network = load_network(args.base)
    donor, _ = read_state_dict(args.donor)
    donor_parts = {part_of(k) for k in donor}
    if args.parts is None:
        parts = [name for name, _ in network.named_children()
                 if name != "upsampler" and name in donor_parts]
    else:
        try:
            parts = named_parts(network, args.parts, "--parts")
        except IpassrError as exc:
            parser.error(str(exc))
        absent = sorted(set(parts) - donor_parts)
        if absent:
            parser.error(f"{args.donor}: has no {', '.join(absent)}")
    try:
        graft(network, donor, parts)
    except IpassrError as exc:
        parser.error(f"{args.donor}: its {', '.join(parts)} do not fit {args.base}'s network ({exc})")
    save_weights(network, args.output, {"provenance": f"{', '.join(parts)} of {args.donor.name}, "
                                                      f"the rest of {args.base.name}"})
    print(f"wrote {args.output} (x{network.scale}): {', '.join(parts)} from {args.donor.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
