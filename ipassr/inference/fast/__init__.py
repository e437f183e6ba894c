"""Fast, memory-bounded inference for any image size, equal to ``IPASSR.forward`` in eval mode:
the path of the networks whose spec says ``banded`` (iPASSR; ``ipassr.models.registry``).

``stereo_forward(network, left, right, max_memory=...)`` runs the network's own modules faster
and leaner than the training-oriented ``forward``: channels_last, no autograd, no concatenation
ever built, the attention a chunk of rows at a time, the upsampler folded and banded.

| module | role |
| --- | --- |
| ``plan`` | whole image or bands, attention chunk height, halos: fits ``max_memory`` |
| ``stages`` | each stage of the network without concatenations (RDB, RDG, biPAM's embedding) |
| ``attention`` | biPAM's attention, valid masks and fusion a chunk of rows at a time |
| ``upsample`` | the upsampler folded into one LR convolution, run in bands of rows |
| ``fusion`` | oneDNN convolutions with activation / residual / accumulation inside (CPU) |
| ``forward`` | the untiled and the banded passes, and ``stereo_forward`` |

Which path runs (``StereoSR`` decides):

| path | when | why it equals the plain forward |
| --- | --- | --- |
| plain ``IPASSR.forward`` | training; attention maps asked for (``return_attention``) | it is the reference |
| compiled plain forward | ``compile=True`` and the full (H, W, W) maps fit the budget | ``torch.compile`` of the same graph |
| untiled fast | the H x W activations fit ``max_memory`` | same operations, regrouped: sums of convolutions of pieces, per-row attention (each row attends only within itself) |
| banded fast | they do not fit | halos cover each stage's receptive field; whole-image statistics (biPAM's BatchNorm, the channel attention's pool) gathered in extra passes |

All are equal to float32 rounding (tests/test_tiling.py, tests/test_chunked.py, tests/test_fused.py).
Shapes: views (B, 3, H, W) in [0, 1] -> SR views (B, 3, sH, sW). Eval-mode semantics only: each
view is normalised by its own statistics, as in the published evaluation (docs/design.md).
"""

from __future__ import annotations

from .forward import stereo_forward
from .plan import (DEFAULT_MAX_MEMORY, InferencePlan, attention_chunk_cap, default_max_memory,
                   memory_budget, plain_forward_bytes, plan_inference, stage_halos)

__all__ = ["stereo_forward", "InferencePlan", "plan_inference", "stage_halos", "DEFAULT_MAX_MEMORY",
           "default_max_memory", "memory_budget", "attention_chunk_cap", "plain_forward_bytes"]
