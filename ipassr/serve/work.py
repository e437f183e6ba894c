"""The web page's work, without the page: the networks to choose from, one super-resolution with
everything the page shows (``Outcome``), the correspondence explorer, and the downloads.

Inference is ``StereoSR``'s (``load_model``; iPASSR through ``forward_with_details``, which gives
the SR pair and biPAM's per-pixel details in one memory-bounded pass); the pictures are
``ipassr.visualize``'s and ``ipassr.figures``'. One ``Studio`` serves one process; its caller
runs one request at a time (the page's queue), so models are not shared between passes.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data import layouts
from ..data.io import image_to_tensor, tensor_to_image
from ..data.media import StereoImage, plan_target, write_stereo
from ..data.resize import degrade, imresize, mod_crop
from ..errors import IpassrError
from ..evaluation.metrics import psnr
from ..inference.api import StereoSR, load_model
from ..inference.images import grey_pairs, grey_where_grey
from ..inference.fast import memory_budget, plan_inference
from ..sizes import FLOAT_BYTES
from ..visualize import valid_masks_figure
from .explorer import Exploration, explore_row

SHIPPED = {"iPASSR x2 (shipped weights)": "x2", "iPASSR x4 (shipped weights)": "x4"}
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".tar")
Progress = Callable[[float, str], None]


def network_choices(weights_dir: Path | None) -> dict[str, str]:
    """Page label -> weights (a shipped name or a file): the shipped weights, then every weights
    file directly in ``weights_dir`` (official iPASSR, NAFSSR, PASSRnet checkpoints or ours)."""
    choices = dict(SHIPPED)
    if weights_dir is not None:
        if not weights_dir.is_dir():
            raise IpassrError(f"--weights-dir {weights_dir}: no such folder")
        for path in sorted(weights_dir.iterdir()):
            if path.is_file() and path.name.endswith(WEIGHT_SUFFIXES):
                choices[path.name] = str(path)
    return choices


def rows_bytes(height: int, width: int) -> int:
    """Bytes of every row's M_R->L and M_L->R kept by one pass (float32 (H, W, W) twice)."""
    return 2 * height * width * width * FLOAT_BYTES


@dataclass
class Outcome:
    """One super-resolved pair and everything the page shows of it (uint8 RGB (H, W, 3) images;
    LR (h, w), SR (s*h, s*w))."""

    key: str
    network: str  # the page label
    label: str  # iPASSR, NAFSSR or PASSRnet
    scale: int
    seconds: float
    photo: StereoImage  # the LR input
    bicubic: tuple[np.ndarray, np.ndarray]
    sr: tuple[np.ndarray, np.ndarray]
    psnr: dict[str, float] | None  # method -> (Left+Right)/2 PSNR, known-answer mode only
    masks: np.ndarray | None  # the valid masks figure
    anaglyph: np.ndarray
    downloads: list[Path]
    rows: np.ndarray | None = None  # M_R->L of every row (h, w, w) float16, when they fitted
    valid_left: np.ndarray | None = None  # V_L (h, w)


class Studio:
    """The server's state: networks (the last two used stay loaded), recent outcomes (for the
    explorer and downloads; the oldest are dropped with their files), limits.

    Every pass runs on one thread of its own, whichever thread asks: glibc gives each thread
    its own malloc arena and keeps what it frees, so passes on a web server's changing worker
    threads ratcheted memory up (four requests: +124 MiB kept, peak +151 MiB for pairs of 40
    MiB passes); on one thread, peak +51 MiB and nothing kept. Its CPU flushes subnormals, as
    the CLI's threads do.
    """

    def __init__(self, choices: dict[str, str], workdir: Path, *, max_memory: int | None = None,
                 device: str = "cpu", keep_models: int = 2, keep_outcomes: int = 6) -> None:
        self.choices, self.workdir, self.device = choices, workdir, device
        self.budget = memory_budget(max_memory, torch.device(device))
        self.models: OrderedDict[str, StereoSR] = OrderedDict()
        self.outcomes: OrderedDict[str, Outcome] = OrderedDict()
        self.keep_models, self.keep_outcomes = keep_models, keep_outcomes
        self.worker = ThreadPoolExecutor(1, "ipassr-network", initializer=torch.set_flush_denormal,
                                         initargs=(True,))

    def close(self) -> None:
        """Stop the pass thread (after the pass it may be running)."""
        self.worker.shutdown()

    def model(self, network: str) -> StereoSR:
        """The loaded network of that page label (loading it, and dropping the least used)."""
        if network not in self.choices:
            raise IpassrError(f"no network called {network!r} on this server")
        if network not in self.models:
            weights = self.choices[network]
            self.models[network] = load_model(weights, max_memory=self.budget, device=self.device)
            while len(self.models) > self.keep_models:
                self.models.popitem(last=False)
        self.models.move_to_end(network)
        return self.models[network]

    def outcome(self, key: str | None) -> Outcome:
        if key is None or key not in self.outcomes:
            raise IpassrError("no result to explore yet (or it has expired): super-resolve a "
                              "pair first")
        return self.outcomes[key]

    def super_resolve(self, photo: StereoImage, network: str, known_answer: bool = False,
                      progress: Progress = lambda fraction, text: None) -> Outcome:
        """Super-resolve ``photo`` (RGB uint8 views) with ``network``; with ``known_answer`` the
        views are the HR truth, shrunk by the scale (MATLAB bicubic) first and scored."""
        return self.worker.submit(self._super_resolve, photo, network, known_answer,
                                  progress).result()

    def _super_resolve(self, photo: StereoImage, network: str, known_answer: bool,
                       progress: Progress) -> Outcome:
        progress(0.05, f"loading {network}")
        model = self.model(network)
        scale = model.scale
        truth = None
        if known_answer:
            progress(0.1, f"shrinking your pair by {scale} (MATLAB bicubic)")
            truth = tuple(mod_crop(view, scale) for view in (photo.left, photo.right))
            photo = photo.with_views(*(degrade(view, scale) for view in truth))
        height, width = photo.left.shape[:2]
        progress(0.2, f"super-resolving {width}x{height} at x{scale} with {model.label}")
        started = time.perf_counter()
        sr, details, rows = self._forward(model, photo)
        seconds = time.perf_counter() - started
        progress(0.85, "drawing the pictures")
        bicubic = (imresize(photo.left, scale), imresize(photo.right, scale))
        scores = None
        if truth is not None:
            scores = {"bicubic": _stereo_psnr(bicubic, truth), model.label: _stereo_psnr(sr, truth)}
        key = uuid.uuid4().hex[:12]
        full = layouts.convert_views(*sr, photo.layout, None)  # half-size eyes restored
        valid_left = masks = None
        if details is not None:
            valid_left, valid_right = (t[0, 0].float().cpu().numpy()
                                       for t in (details.valid_left, details.valid_right))
            masks = valid_masks_figure(photo.left, photo.right, valid_left, valid_right,
                                       model.label)
        progress(0.95, "writing the downloads")
        downloads = self._downloads(key, photo, sr, scale, with_input=truth is not None)
        outcome = Outcome(key, network, model.label, scale, seconds, photo, bicubic, sr, scores,
                          masks, layouts.anaglyph(*full), downloads, rows, valid_left)
        self._remember(outcome)
        return outcome

    def _forward(self, model: StereoSR, photo: StereoImage):
        """SR views (uint8), biPAM's details (iPASSR) and every row's M_R->L when they fit a
        quarter of the budget (the pass then gets the rest)."""
        left, right = image_to_tensor(photo.left), image_to_tensor(photo.right)
        height, width = photo.left.shape[:2]
        details = rows = None
        if model.has_attention:
            kept = rows_bytes(height, width)
            keep_rows = kept <= self.budget // 4 and _fits(model, height, width,
                                                            self.budget - kept)
            model.max_memory = self.budget - (kept if keep_rows else 0)
            try:
                sr_left, sr_right, details = model.forward_with_details(
                    left, right, keep_rows=range(height) if keep_rows else ())
            finally:
                model.max_memory = self.budget
            if keep_rows:
                rows = np.stack([details.rows[r][0][0].float().numpy().astype(np.float16)
                                 for r in range(height)])
                details.rows.clear()
        else:
            sr_left, sr_right = model.super_resolve_tensors(left, right)
        grey = grey_pairs(left, right)  # as StereoSR.super_resolve: grey in, grey out
        sr_left, sr_right = (grey_where_grey(v, grey) for v in (sr_left, sr_right))
        return (tensor_to_image(sr_left.float()), tensor_to_image(sr_right.float())), details, rows

    def _downloads(self, key: str, photo: StereoImage, sr: tuple[np.ndarray, np.ndarray],
                   scale: int, with_input: bool) -> list[Path]:
        """The SR pair as two PNGs, a side-by-side PNG and an MPO, in this outcome's folder;
        ``with_input``: also the LR pair the page made (known-answer mode), to rerun elsewhere."""
        folder = self.workdir / "results" / key
        base = Path(photo.name).stem if photo.kind != "files" else "stereo"
        base = "".join(c if c.isalnum() or c in "-_" else "_" for c in base)[:40]
        stem = f"{base}_x{scale}"
        result = photo.with_views(*sr)
        left, right = folder / f"{stem}_left.png", folder / f"{stem}_right.png"
        write_stereo(plan_target(output_left=left, output_right=right), result)
        files = [left, right]
        for name, layout in ((f"{stem}_sbs.png", "sbsl"), (f"{stem}.mpo", None)):
            target = plan_target(folder / name, output_layout=layout, source_layout=photo.layout)
            write_stereo(target, result)
            files.append(folder / name)
        if with_input:
            made = [folder / f"{base}_lr_left.png", folder / f"{base}_lr_right.png"]
            write_stereo(plan_target(output_left=made[0], output_right=made[1]), photo)
            files += made
        return files

    def _remember(self, outcome: Outcome) -> None:
        self.outcomes[outcome.key] = outcome
        while len(self.outcomes) > self.keep_outcomes:
            _, old = self.outcomes.popitem(last=False)
            shutil.rmtree(self.workdir / "results" / old.key, ignore_errors=True)

    def explore(self, key: str | None, x: int, y: int) -> Exploration:
        """Where the network looks in the right view for left LR pixel (x, y) of an outcome."""
        return self.worker.submit(self._explore, key, x, y).result()

    def _explore(self, key: str | None, x: int, y: int) -> Exploration:
        outcome = self.outcome(key)
        height, width = outcome.photo.left.shape[:2]
        if not (0 <= x < width and 0 <= y < height):
            raise IpassrError(f"({x}, {y}) is outside the {width}x{height} left view")
        weights = self._attention_row(outcome, y)
        if weights is None:
            return Exploration(x, y, None, note=f"{outcome.label} in {outcome.network} has no "
                               "parallax attention (a single-view network): it does not look in "
                               "the other view, so there is nothing to explore")
        valid = None if outcome.valid_left is None else float(outcome.valid_left[y, x])
        return explore_row(outcome.photo.right, weights[x], x, y, outcome.label, valid)

    def _attention_row(self, outcome: Outcome, y: int) -> np.ndarray | None:
        """Row ``y``'s M_R->L (w, w): kept from the pass, or one more pass for that row."""
        if outcome.rows is not None:
            return outcome.rows[y].astype(np.float32)
        model = self.model(outcome.network)
        left, right = (image_to_tensor(v) for v in (outcome.photo.left, outcome.photo.right))
        if model.has_attention:
            _, _, details = model.forward_with_details(left, right, keep_rows=[y])
            return details.rows[y][0][0].float().numpy()
        if not model.spec.attention_rows:  # e.g. iPASSR without biPAM (the single-view ablation)
            return None
        with torch.inference_mode(), model.out_of_memory_explained(left):
            inputs = left.to(model.device, model.dtype), right.to(model.device, model.dtype)
            return model.network.attention_row(*inputs, y)[0][0].float().cpu().numpy()


def _fits(model: StereoSR, height: int, width: int, budget: int) -> bool:
    """Whether the planner can run an (h, w) pair within ``budget`` bytes."""
    try:
        plan_inference(model.network, 1, height, width, budget, model.device)
    except IpassrError:
        return False
    return True


def _stereo_psnr(views: tuple[np.ndarray, np.ndarray], truth: tuple[np.ndarray, np.ndarray]
                 ) -> float:
    """(Left+Right)/2 PSNR, the paper's stereo score."""
    return (psnr(views[0], truth[0]) + psnr(views[1], truth[1])) / 2


__all__ = ["Studio", "Outcome", "network_choices", "rows_bytes", "SHIPPED"]
