"""Super-resolving stereo pairs: the Python API behind ``ipassr infer``.

``load_model`` gives a ``StereoSR``, whose ``super_resolve(left, right)`` takes file paths, PIL
images, NumPy arrays or tensors and gives the result back as the input came (grey stays grey,
16 bits stay 16 bits, alpha is kept; ``ipassr.inference.images``). The network runs in eval mode under
``torch.inference_mode``: biPAM's BatchNorm normalises each view by its own statistics, so a pair's
result does not depend on what else is in the batch.
"""

from __future__ import annotations

import contextlib
import os
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from ..models.checkpoint import load_network
from ..models.registry import spec_of
from ..devices import PRECISION_NAMES, parse_device
from ..errors import CheckpointError, IpassrError
from .fast import attention_chunk_cap, memory_budget, plan_inference, stereo_forward
from .fast.attention import RowAttention
from ..data.io import FloatImage, PathLike, check_same_size, float_views
from ..data.media import StereoImage, StereoTarget, plan_target, read_stereo, read_views, write_stereo
from .images import (as_view, give_back, grey_pairs, grey_where_grey, result_view,
                     to_batch_tensor, view_tensor)
from ..sizes import format_bytes

SHIPPED_SCALES = (2, 4)


def shipped_weights_path(scale: int) -> Path:
    """Path of the trained weights shipped in the package for ``scale`` (may not exist)."""
    return Path(str(resources.files("ipassr") / "weights" / f"ipassr_x{scale}.safetensors"))


def weights_path(scale: int, *, cli: bool = False) -> Path:
    """The shipped weights for ``scale`` (2 or 4); CheckpointError when the package has none
    (in the command line's words with ``cli``, else in the API's)."""
    path = shipped_weights_path(scale)
    if not path.is_file():
        raise CheckpointError(
            f"no shipped weights for x{scale} (looked for {path}); pass "
            f"{spelled('weights', 'FILE', cli)}"
            + ("" if scale in SHIPPED_SCALES else f"; shipped scales are {SHIPPED_SCALES}"))
    return path


def spelled(option: str, value: Any, cli: bool) -> str:
    """An option as the caller writes it: '--weights FILE' on the command line, 'weights=FILE'
    in the API."""
    return f"--{option.replace('_', '-')} {value}" if cli else f"{option}={value}"


def shipped_name_scale(weights: PathLike) -> int | None:
    """2 for the name 'x2' (4 for 'x4', ...) when it names shipped weights rather than a file."""
    text = str(weights)
    if text.lower() in {f"x{s}" for s in SHIPPED_SCALES} and not Path(text).exists():
        return int(text[1:])
    return None


def resolve_weights(weights: PathLike | None, scale: int | None, *, cli: bool = False) -> Path:
    """The weights file to use: the one given ('x2' / 'x4' name the shipped ones), or the shipped
    one for ``scale``; errors in the command line's words with ``cli``, else in the API's."""
    if weights is not None:
        named = shipped_name_scale(weights)
        if named is None:
            return Path(weights)
        if scale is not None and scale != named:
            raise CheckpointError(f"{spelled('weights', weights, cli)} names the shipped x{named} "
                                  f"weights but x{scale} was requested")
        return weights_path(named, cli=cli)
    if scale is None:
        raise IpassrError(f"give {spelled('weights', 'FILE', cli)}, or "
                          f"{spelled('scale', 'S', cli)} for the shipped weights")
    return weights_path(scale, cli=cli)


FastForward = Callable[..., tuple]  # the signature of ``ipassr.inference.fast.stereo_forward``


class StereoSR:
    """A loaded network (any registered one: iPASSR, NAFSSR, PASSRnet, plugins) ready to
    super-resolve stereo pairs.

    The one place that picks how a pair runs, from what the network's spec offers
    (``ipassr.models.registry``): the plain forward (full attention maps asked for), and for a
    banded network (iPASSR) the compiled plain forward (``compile`` and the full maps fit the
    budget) or the fast path (``fast_forward``, default ``ipassr.inference.fast.stereo_forward``:
    untiled or banded as its planner decides); other networks run their own forward, untiled.
    """

    fast_forward: FastForward = staticmethod(stereo_forward)

    def __init__(self, network: torch.nn.Module, device: str | torch.device = "cpu", *,
                 max_memory: int | None = None, dtype: torch.dtype = torch.float32,
                 compile: bool = False, fast_forward: FastForward | None = None) -> None:
        if fast_forward is not None:
            self.fast_forward = fast_forward
        self.device = parse_device(device)
        self.spec = spec_of(network)  # what the network offers
        self.network = network.to(self.device, dtype).eval()
        self.max_memory = max_memory  # bytes of activations per forward pass (None: default)
        # torch.compile of the plain forward, for pairs whose full maps fit the budget (lazy:
        # it compiles on the first such pair, and again for each new size)
        self.compiled = torch.compile(self.network) if compile and self.spec.banded else None

    @property
    def dtype(self) -> torch.dtype:
        """The network's precision (float32, or bfloat16/float16 for speed on a GPU)."""
        return next(self.network.parameters()).dtype

    @property
    def scale(self) -> int:
        return self.network.scale

    def super_resolve_tensors(self, left: torch.Tensor, right: torch.Tensor,
                              return_attention: bool = False):
        """Float (B, 3, H, W) pairs in [0, 1] -> raw network output (B, 3, sH, sW), unclamped.

        Without attention maps this runs the fast, memory-bounded path (``ipassr.inference.fast``),
        equal to the plain forward to float32 rounding, or, with ``compile``, the compiled plain
        forward when its full maps fit the memory budget; ``return_attention`` needs the full
        (B, H, W, W) maps and so runs the plain forward. Outputs are float32 whatever the
        network's precision.
        """
        check_finite(left, "left")
        check_finite(right, "right")
        with self.out_of_memory_explained(left):
            return self._forward(left, right, return_attention)

    @contextlib.contextmanager
    def out_of_memory_explained(self, left: torch.Tensor) -> Iterator[None]:
        """Turn the device running out of memory inside the block into an ``IpassrError`` that
        gives the pair's size, the budget and what to do (``left``: the (B, 3, H, W) input)."""
        try:
            yield
        except RuntimeError as error:  # torch's out-of-memory errors are RuntimeErrors
            if not _out_of_memory(error):
                raise
            raise IpassrError(self._out_of_memory_message(left)) from None

    def _forward(self, left: torch.Tensor, right: torch.Tensor, return_attention: bool):
        left, right = left.to(self.device, self.dtype), right.to(self.device, self.dtype)
        if return_attention:
            if not self.spec.attention_maps:
                raise IpassrError(f"{self.label} does not return attention maps (the networks "
                                  "with biPAM-style maps do, such as iPASSR)")
            with torch.inference_mode():
                sr_left, sr_right, maps = self.network(left, right, return_attention=True)
            return sr_left.float(), sr_right.float(), maps
        if not self.spec.banded:
            return self._forward_untiled(left, right)
        if self.compiled is not None and self._plain_fits(left):
            with torch.inference_mode():
                sr_left, sr_right = self.compiled(left, right)
        else:
            sr_left, sr_right = self.fast_forward(self.network, left, right,
                                                  max_memory=self.max_memory)
        return sr_left.float(), sr_right.float()

    @property
    def label(self) -> str:
        """The network's name for reports: iPASSR, NAFSSR, PASSRnet, a plugin's label."""
        return self.spec.display_name

    @property
    def has_attention(self) -> bool:
        """Whether the network gives biPAM-style attention maps and valid masks (iPASSR with
        biPAM), the memory-bounded way (``forward_with_details``)."""
        return self.spec.banded and self.spec.offers_attention_maps(self.network)

    def forward_with_details(self, left: torch.Tensor, right: torch.Tensor,
                             keep_rows: Sequence[int] = ()
                             ) -> tuple[torch.Tensor, torch.Tensor, RowAttention]:
        """SR views and biPAM's per-pixel details (valid masks, attention offsets and peaks,
        the full maps of ``keep_rows``) of (B, 3, H, W) pairs, from the memory-bounded path."""
        if not self.has_attention:
            raise IpassrError("this model has no parallax attention (use_attention=False): there "
                              "are no valid masks or attention maps")
        with self.out_of_memory_explained(left):
            return self.fast_forward(self.network, left.to(self.device, self.dtype),
                                     right.to(self.device, self.dtype),
                                     max_memory=self.max_memory, return_details=True,
                                     keep_rows=keep_rows)

    def _forward_untiled(self, left: torch.Tensor, right: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """A network without bands (NAFSSR, PASSRnet, plugins): its own forward, untiled, its
        attention in chunks of rows where it offers that (``set_attention_memory``).

        A network whose pairs depend on their batch neighbours (PASSRnet: its valid-mask
        morphology links the pairs of a batch) runs one pair at a time.
        """
        batch, _, height, width = left.shape
        alone = not self.spec.batch_independent
        budget = self._budget()
        if self.spec.memory is not None:
            needed = self.spec.memory(self.network, 1 if alone else batch, height, width)
            if needed > budget:
                raise IpassrError(
                    f"a {width}x{height} pair (batch {batch}) needs about {format_bytes(needed)} "
                    f"with {self.label}, which runs untiled (no exact bands; docs/networks.md), "
                    f"but the memory budget is {format_bytes(budget)}: raise --max-memory or use "
                    "smaller images")
        if hasattr(self.network, "set_attention_memory"):
            self.network.set_attention_memory(min(attention_chunk_cap(self.device), budget // 4))
        with torch.inference_mode():
            if alone:
                pairs = [self.network(left[i:i + 1], right[i:i + 1]) for i in range(batch)]
                return (torch.cat([p[0] for p in pairs]).float(),
                        torch.cat([p[1] for p in pairs]).float())
            sr_left, sr_right = self.network(left, right)
        return sr_left.float(), sr_right.float()

    def _budget(self) -> int:
        """Bytes of activations one forward pass may use (``max_memory`` or the default)."""
        return memory_budget(self.max_memory, self.device)

    def _out_of_memory_message(self, left: torch.Tensor) -> str:
        budget = self._budget()
        return (f"out of {self.device.type.upper()} memory super-resolving a "
                f"{left.shape[-1]}x{left.shape[-2]} pair (batch {left.shape[0]}) with a budget "
                f"of {format_bytes(budget)}: lower --max-memory (the pass then runs in smaller "
                "chunks and bands, with the same result)"
                + (", or use --dtype bfloat16" if self.device.type == "cuda" else ""))

    def _plain_fits(self, left: torch.Tensor) -> bool:
        """Whether the plain forward (full attention maps) of this batch fits the budget."""
        batch, _, height, width = left.shape
        return plan_inference(self.network, batch, height, width, self.max_memory,
                              self.device).plain_fits

    def super_resolve(self, left: Any, right: Any) -> tuple[Any, Any]:
        """Super-resolve one pair (or a batch of tensors); the result comes back as the input came.

        - file paths -> arrays as ``ipassr.data.io.read_pixels`` gives them: the file's channels
          ((H, W) grey, (H, W, 2) grey + alpha, (H, W, 3) RGB, (H, W, 4) RGBA) and bit depth
          (uint8, or uint16 for 16-bit PNG/TIFF);
        - PIL images -> PIL images of the same mode (L, LA, RGB, RGBA, I;16; palettes as RGB or
          RGBA, other colour modes as RGB);
        - arrays (H, W[, C]) uint8, uint16 or float in [0, 1] -> arrays of the same dtype and
          channels ((H, W, 1) as (H, W));
        - tensors (3, H, W) or (B, 3, H, W) float in [0, 1] -> float tensors.

        All clamped to [0, 1] (or the integer range) and rounded only at the end. Grey in, grey
        out: a pair whose views are both grey comes back grey. Alpha is upscaled with MATLAB's
        bicubic and kept.
        """
        if isinstance(left, torch.Tensor) or isinstance(right, torch.Tensor):
            return self._super_resolve_batch(left, right)
        if isinstance(left, (str, os.PathLike)) and isinstance(right, (str, os.PathLike)):
            photo = read_views(left, right)  # the command line's reader and checks
            left, right = photo.left, photo.right
        (left_view, kind), (right_view, _) = as_view(left, "left"), as_view(right, "right")
        check_same_size(left_view.colour, right_view.colour)
        (sr_left, sr_right), = self.super_resolve_views([(left_view, right_view)])
        return give_back(sr_left, kind), give_back(sr_right, kind)

    def _super_resolve_batch(self, left: Any, right: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``super_resolve`` of tensors: (3, H, W) or (B, 3, H, W) in, the same shape out."""
        left_t, kind = to_batch_tensor(left, "left")
        right_t, _ = to_batch_tensor(right, "right")
        if left_t.shape != right_t.shape:
            raise IpassrError(f"left is {_size(left_t)} but right is {_size(right_t)}: "
                              "the two views must have the same size")
        sr_left, sr_right = self.super_resolve_tensors(left_t, right_t)
        grey = grey_pairs(left_t, right_t)
        sr_left, sr_right = (grey_where_grey(v, grey).clamp(0, 1) for v in (sr_left, sr_right))
        return (sr_left, sr_right) if kind == "tensor" else (sr_left[0], sr_right[0])

    def super_resolve_views(self, pairs: Sequence[tuple[FloatImage, FloatImage]]
                            ) -> list[tuple[FloatImage, FloatImage]]:
        """Pairs of equal size (``FloatImage`` views) as one batch -> their SR views, each in
        its input's pixel format: the one batched path of the API, the files and the folders.

        A grey view (or a pair of grey views) comes back grey: the channels' mean of the SR view,
        whatever the batch; alpha is upscaled with MATLAB's bicubic and kept.
        """
        left = torch.cat([view_tensor(lr_left) for lr_left, _ in pairs])
        right = torch.cat([view_tensor(lr_right) for _, lr_right in pairs])
        sr_left, sr_right = self.super_resolve_tensors(left, right)
        grey = grey_pairs(left, right)
        views = []
        for sr, side in ((sr_left, 0), (sr_right, 1)):
            own = torch.tensor([pair[side].format.grey for pair in pairs])
            views.append(grey_where_grey(sr, grey | own))
        return [(result_view(views[0][i], lr_left, self.scale),
                 result_view(views[1][i], lr_right, self.scale))
                for i, (lr_left, lr_right) in enumerate(pairs)]

    def super_resolve_files(self, left: PathLike, right: PathLike, output_left: PathLike,
                            output_right: PathLike) -> None:
        """Read a pair of image files, super-resolve it and write both views in their inputs'
        formats (grey stays grey, 16 bits stay 16 bits, alpha is kept)."""
        photo = self.super_resolve_photo(read_views(left, right))
        write_stereo(plan_target(output_left=output_left, output_right=output_right), photo)

    def super_resolve_file(self, input: PathLike, output: PathLike, *, layout: str | None = None,
                           output_layout: str | None = None) -> StereoTarget:
        """Super-resolve a stereo photo file (MPO, JPS, spatial HEIC, or a picture in ``layout``)
        into ``output`` (.mpo, .jps, or a picture in ``output_layout``, default the input's;
        ``anaglyph`` for red-cyan); returns what was written (``ipassr.data.media``)."""
        photo = read_stereo(input, layout)
        target = plan_target(output, output_layout=output_layout, source_layout=photo.layout)
        write_stereo(target, self.super_resolve_photo(photo))
        return target

    def super_resolve_photo(self, photo: StereoImage) -> StereoImage:
        """Both views of a stereo photo super-resolved on their stored pixels (a half-size layout
        stays half-size: ``write_stereo`` restores the aspect where the output asks for it)."""
        return self.super_resolve_photos([photo])[0]

    def super_resolve_photos(self, photos: Sequence[StereoImage]) -> list[StereoImage]:
        """Stereo photos whose views have one size, as one batch (``super_resolve_views``): each
        comes back with SR views in its own pixel format."""
        views = [(float_views(photo.left, f"{photo.name} (left)"),
                  float_views(photo.right, f"{photo.name} (right)")) for photo in photos]
        try:
            results = self.super_resolve_views(views)
        except IpassrError as error:  # say which photos (e.g. too small, too large for memory)
            raise IpassrError(f"{', '.join(photo.name for photo in photos)}: {error}") from None
        return [photo.with_views(sr_left.pixels(), sr_right.pixels())
                for photo, (sr_left, sr_right) in zip(photos, results)]


def load_model(weights: PathLike | None = None, *, scale: int | None = None,
               device: str | torch.device = "cpu", max_memory: int | None = None,
               dtype: torch.dtype | str = torch.float32, compile: bool = False,
               architecture: str | None = None, size: str | None = None) -> StereoSR:
    """Load iPASSR weights (reference ``.pth.tar``, our ``.safetensors``, or the shipped ones).

    ``scale`` picks the shipped weights when ``weights`` is None, and is checked against the file
    otherwise (a mismatch is a ``CheckpointError``). ``max_memory`` bounds the activation memory
    of one forward pass in bytes (default ``ipassr.inference.fast.default_max_memory``: 4 GiB on the
    CPU, half the available memory on a GPU): larger images are processed in chunks of rows
    and, if needed, in bands, with identical results.
    ``dtype`` ("float32", "bfloat16", "float16" or a torch dtype) is the network's precision:
    half precision is for GPUs; the attention softmax and valid masks stay float32.
    ``compile`` runs pairs whose full attention maps fit ``max_memory`` through
    ``torch.compile`` of the plain forward (compiled once per image size; other pairs take the
    fast path). Equal to float32 rounding; measured slower than the fast path on a CPU
    (bench/README.md), so meant for trying on a GPU (banded networks: iPASSR).
    The file may hold the weights of any registered network (NAFSSR, PASSRnet, plugins:
    ``ipassr.models.registry``): ``architecture`` (a registered name such as 'nafssr') and
    ``size`` (e.g. NAFSSR's 'T', 'S', 'B', 'L') are then checked against what the file holds.
    """
    path = resolve_weights(weights, scale)
    network = load_network(path, scale=scale, architecture=architecture, size=size)
    return StereoSR(network, device=device, max_memory=max_memory, dtype=parse_dtype(dtype),
                    compile=compile)


PRECISIONS = {name: getattr(torch, name) for name in PRECISION_NAMES}


def parse_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """'float32' / 'bfloat16' / 'float16' (or the torch dtype itself) -> torch dtype."""
    if isinstance(dtype, torch.dtype) and dtype in PRECISIONS.values():
        return dtype
    if dtype in PRECISIONS:
        return PRECISIONS[dtype]
    raise IpassrError(f"unsupported precision {dtype!r}: use one of {', '.join(PRECISIONS)}")


def _out_of_memory(error: BaseException) -> bool:
    """Whether an exception is the device running out of memory (CUDA, or the CPU allocator)."""
    return (isinstance(error, torch.cuda.OutOfMemoryError)
            or "can't allocate memory" in str(error) or "out of memory" in str(error))


def check_finite(tensor: torch.Tensor, name: str) -> None:
    """Refuse NaN or infinite input values, which would silently poison the whole row's attention."""
    if not torch.isfinite(tensor).all():
        raise IpassrError(f"{name} view contains NaN or infinite values")


def _size(t: torch.Tensor) -> str:
    return f"{t.shape[-1]}x{t.shape[-2]}"
