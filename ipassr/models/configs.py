"""The networks' and losses' configs, torch-free: the training config and the CLI's parser read
them before torch starts (re-exported by ``ipassr.models.ipassr`` and ``ipassr.models.losses``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelConfig:
    """Everything that changes the network's shape or forward pass (saved with the weights).

    ``use_attention=False`` is the paper's single-input variant (Table 1): no biPAM, each view
    fused with itself. ``use_whitening`` / ``use_valid_mask`` are the Table 3 ablations.
    """

    scale: int = 4
    use_attention: bool = True
    use_whitening: bool = True
    use_valid_mask: bool = True
    channels: int = 64  # C: features per pixel (the paper's 64); biPAM's hierarchy has 4C

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LossConfig:
    """Which terms enter the total, in which form, and their weight lambda (0.1 in the paper)."""

    sr: bool = True
    photo: bool = True
    smooth: bool = True
    cycle: bool = True
    cons: bool = True
    residual_photo: bool = True
    residual_cycle: bool = True
    residual_cons: bool = True
    weight: float = 0.1
    hint_weight: float = 0.0  # not in the paper: the attention-hint term (hint_loss); 0 = off
    views: str = "both"  # "left": asymmetric training, only the left SR view is supervised
    # (L_cons then drops out: both of its terms need the right SR view, which is not produced)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def needs_attention(self) -> bool:
        return self.photo or self.smooth or self.cycle or self.cons or self.hint_weight > 0


__all__ = ["ModelConfig", "LossConfig"]
