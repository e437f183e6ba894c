"""The page of ``ipassr serve`` (Gradio 6): inputs, before/after sliders, valid masks, anaglyph,
the correspondence explorer and downloads, over a ``Studio``.

Import this module only after ``ipassr.serve.server.prepare_environment`` (``serve`` does):
Gradio reads its temporary folder and analytics switch when it is imported.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any

import gradio as gr

from ..data.layouts import LAYOUTS
from ..errors import IpassrError
from ..figures import enlarge
from .explorer import explorer_scale, mark_pixel
from .uploads import AUTO_LAYOUT, Limits, in_page_words, read_upload
from .work import Outcome, Studio

STEREO_TYPES = [".mpo", ".jps", ".heic", ".heif", ".png", ".jpg", ".jpeg", ".tif", ".tiff",
                ".bmp", ".webp"]
INTRO = """# ipassr: stereo super-resolution in your browser
Upload a stereo photo (an MPO from a 3D camera or a Nintendo 3DS, a JPS, an Apple spatial HEIC, or
one picture holding both views side by side or top-bottom), or its left and right views as two
pictures, and **iPASSR** enlarges both views at once, using each view to help the other. Everything
runs on this computer; nothing is sent anywhere."""
EXPLORER = """### Correspondence explorer
Click a pixel of the left view: the right view shows where the network looks for it (that row of
the attention map M_R->L as a heat line), with the strongest match ringed, and the disparity it
implies. This is what makes a stereo network better than a single-image one."""
CSS = "#status {min-height: 3em} footer {display: none !important}"
EMPTY = (None, None, None, None, None, None, None, None)


def build_page(studio: Studio, limits: Limits) -> gr.Blocks:
    """The page's layout and its two events (super-resolve; click in the explorer)."""
    with gr.Blocks(title="ipassr: stereo super-resolution", analytics_enabled=False,
                   delete_cache=(900, 3600)) as page:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1):
                with gr.Tab("One stereo file"):
                    stereo = gr.File(label="MPO, JPS, spatial HEIC, or one picture with both views",
                                     file_types=STEREO_TYPES, type="filepath",
                                     elem_id="stereo-file")
                    layout = gr.Dropdown([AUTO_LAYOUT, *LAYOUTS], value=AUTO_LAYOUT,
                                         label="Layout of one picture holding both views "
                                               "(sbsl: side by side, left first; tbl: top-bottom)")
                with gr.Tab("Two pictures"):
                    left = gr.File(label="Left view", file_types=["image"], type="filepath",
                                   elem_id="left-file")
                    right = gr.File(label="Right view", file_types=["image"], type="filepath",
                                    elem_id="right-file")
                network = gr.Dropdown(list(studio.choices), value=next(iter(studio.choices)),
                                      label="Network and scale", elem_id="network")
                known = gr.Checkbox(label="Known answer: treat my pair as the truth, shrink it by "
                                          "the scale first, and score bicubic and SR against it "
                                          "(PSNR)", elem_id="known")
                run = gr.Button("Super-resolve", variant="primary", elem_id="run")
                gr.Markdown(f"Uploads: {limits.describe()}. One pair at a time; memory per pair "
                            f"at most {studio.budget / 2 ** 30:.2f} GiB.")
            with gr.Column(scale=2):
                status = gr.Markdown("Waiting for a stereo pair.", elem_id="status")
                with gr.Row():
                    slider_left = gr.ImageSlider(label="Left view: bicubic | SR (drag the bar)",
                                                 format="png", elem_id="slider-left")
                    slider_right = gr.ImageSlider(label="Right view: bicubic | SR",
                                                  format="png", elem_id="slider-right")
        with gr.Row():
            masks = gr.Image(label="Valid masks", show_label=False, format="png",
                             elem_id="masks")  # the figure has its own title
            anaglyph = gr.Image(label="Anaglyph of the SR pair (red-cyan glasses)", format="png",
                                elem_id="anaglyph")
        gr.Markdown(EXPLORER)
        with gr.Row():
            explore_left = gr.Image(label="Left view (LR): click a pixel", interactive=False,
                                    format="png", elem_id="explorer-left")
            explore_right = gr.Image(label="Right view: where the network looks",
                                     show_label=False, format="png", elem_id="explorer-right")
        explore_text = gr.Markdown(elem_id="explorer-text")
        downloads = gr.File(label="Downloads: the SR pair (two PNGs), side by side (PNG), MPO",
                            file_count="multiple", elem_id="downloads")
        key = gr.State()

        def super_resolve(stereo_path: str | None, left_path: str | None,
                          right_path: str | None, layout_name: str, network_name: str,
                          known_answer: bool, progress=gr.Progress()) -> tuple:
            try:
                photo = read_upload(*(Path(p) if p else None
                                      for p in (stereo_path, left_path, right_path)),
                                    layout_name, limits)
                outcome = studio.super_resolve(photo, network_name, bool(known_answer),
                                               lambda f, text: progress(f, desc=text))
            except IpassrError as exc:
                return (f"**Could not super-resolve:** {in_page_words(str(exc))}", *EMPTY)
            except MemoryError:
                return ("**Could not super-resolve:** out of memory; try a smaller pair or the "
                        "known-answer mode (it shrinks the pair first)", *EMPTY)
            except Exception as exc:  # noqa: BLE001 - a bug: one line in the page, the server stays
                traceback.print_exc(file=sys.stderr)
                return (f"**Internal error** ({type(exc).__name__}): please report it", *EMPTY)
            return results(outcome)

        def explore(outcome_key: str | None, event: gr.SelectData) -> tuple:
            try:
                outcome = studio.outcome(outcome_key)
                k = explorer_scale(outcome.photo.left.shape[1])
                x, y = (int(v) // k for v in event.index[:2])
                found = studio.explore(outcome_key, x, y)
            except IpassrError as exc:
                return gr.update(), None, f"**Explorer:** {exc}"
            return mark_pixel(outcome.photo.left, x, y), found.picture, found.describe()

        run.click(super_resolve, [stereo, left, right, layout, network, known],
                  [status, slider_left, slider_right, masks, anaglyph, explore_left,
                   explore_right, downloads, key], concurrency_id="network",
                  api_name="super_resolve")
        explore_left.select(explore, [key], [explore_left, explore_right, explore_text],
                            concurrency_id="network", api_name=False)
    return page


def results(outcome: Outcome) -> tuple[Any, ...]:
    """The page's outputs for one outcome, status line first."""
    height, width = outcome.photo.left.shape[:2]
    line = (f"**Done:** {outcome.label} x{outcome.scale} on {width}x{height} -> "
            f"{width * outcome.scale}x{height * outcome.scale} in {outcome.seconds:.1f} s.")
    if outcome.psnr:
        scores = ", ".join(f"{name} {value:.2f} dB" for name, value in outcome.psnr.items())
        gain = outcome.psnr[outcome.label] - outcome.psnr["bicubic"]
        line += f" Known answer, (Left+Right)/2 PSNR: {scores} ({gain:+.2f} dB)."
    if outcome.masks is None:
        line += f" {outcome.label} has no biPAM valid masks to show."
    return (line, (outcome.bicubic[0], outcome.sr[0]), (outcome.bicubic[1], outcome.sr[1]),
            outcome.masks, outcome.anaglyph, enlarge(outcome.photo.left), None,
            [str(p) for p in outcome.downloads], outcome.key)


__all__ = ["build_page", "results", "CSS"]
