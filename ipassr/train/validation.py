"""Validation during training: the evaluation protocol on a test root, and biPAM's matches."""

from __future__ import annotations

import torch
from torch import nn

from ..data.io import PathLike


def validate(network: nn.Module, root: PathLike, scale: int, device: torch.device,
             max_scenes: int | None = None) -> dict[str, dict[str, float]]:
    """Mean Left / (Left+Right)/2 PSNR and SSIM per dataset, exactly as ``ipassr evaluate``.

    ``root`` is a community-layout test root (ROOT/<Dataset>/hr, lr_x<s>). Each pair runs alone in
    eval mode (BatchNorm with the image's own statistics) through ``StereoSR``; outputs are clamped
    and quantised to 8 bits before scoring. The network is put back in training mode afterwards.
    """
    from ..evaluation.protocol import Method, evaluate, find_datasets
    from ..inference.api import StereoSR

    class TrainingNetwork(Method):
        label = "training"

        def __init__(self) -> None:
            self.model = StereoSR(network, device)

        def super_resolve(self, dataset, scene, lr_left, lr_right):
            return self.model.super_resolve(lr_left, lr_right)

    was_training = network.training
    try:
        datasets = [(name, scenes[:max_scenes]) for name, scenes in find_datasets(root, scale)]
        report = evaluate(datasets, [TrainingNetwork()], scale)
    finally:
        network.train(was_training)
    results = {}
    for name, scenes in datasets:
        results[name] = report.dataset_mean("training", name)
        results[name]["scenes"] = len(scenes)
    return results


def validate_correspondence(network: nn.Module, device: torch.device) -> dict[str, float]:
    """(L+R)/2 correspondence scores of biPAM on scikit-image's Motorcycle pair
    (``ipassr.evaluation.correspondence``), in eval mode; the network is put back in its mode afterwards."""
    from ..evaluation.correspondence import motorcycle_correspondence, summary_row
    from ..inference.api import StereoSR

    was_training = network.training
    try:
        return summary_row(motorcycle_correspondence(StereoSR(network, device)))
    finally:
        network.train(was_training)


__all__ = ["validate", "validate_correspondence"]
