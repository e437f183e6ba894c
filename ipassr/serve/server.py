"""Running the page safely: its own temporary folder (removed at exit), no analytics, no share
link, nothing fetched from the internet, loopback unless told otherwise, one pair at a time with
a bounded queue (the rest are told the server is busy)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import IpassrError
from .uploads import Limits

OFFLINE = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
                  "GRADIO_SSR_MODE": "False", "GRADIO_MCP_SERVER": "False"}


@dataclass(frozen=True)
class ServeOptions:
    """What ``ipassr serve`` was asked for."""

    host: str = "127.0.0.1"
    port: int = 7860
    max_memory: int = 2 * 2 ** 30
    weights_dir: Path | None = None
    device: str = "cpu"
    limits: Limits = Limits()
    queue_size: int = 4


def prepare_environment(temp: Path) -> None:
    """Point Gradio at ``temp`` for uploads and results and switch off what reaches outside."""
    os.environ["GRADIO_TEMP_DIR"] = str(temp / "gradio")
    os.environ.update(OFFLINE)


def serve(options: ServeOptions, announce=print) -> None:
    """Serve the page until interrupted; its temporary folder is removed however it ends."""
    if importlib.util.find_spec("gradio") is None:  # not imported yet: see prepare_environment
        raise IpassrError("ipassr serve needs the web extra: pip install 'ipassr[web]'")
    temp = Path(tempfile.mkdtemp(prefix="ipassr-serve-"))
    try:
        prepare_environment(temp)
        from .app import CSS, build_page
        from .work import Studio, network_choices

        studio = Studio(network_choices(options.weights_dir), temp, max_memory=options.max_memory,
                        device=options.device)
        try:
            page = build_page(studio, options.limits)
            page.queue(max_size=options.queue_size, default_concurrency_limit=1)
            announce(f"ipassr serve: http://{options.host}:{options.port} (Ctrl-C stops it; "
                     f"temporary files in {temp}, removed then)")
            page.launch(server_name=options.host, server_port=options.port, share=False,
                        max_file_size=options.limits.max_bytes, ssr_mode=False, mcp_server=False,
                        show_error=False, quiet=True, css=CSS, footer_links=[], pwa=False,
                        prevent_thread_lock=True)
            try:
                while page.is_running:
                    time.sleep(0.1)
            except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (ipassr.cli)
                announce("ipassr serve: stopped")
            finally:
                stop_now(page)
        finally:
            studio.close()
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def stop_now(page) -> None:
    """Stop serving without waiting for open connections: every open tab holds an event stream,
    and Gradio's own close waits up to 5 s for them to end."""
    if page.server is not None:
        page.server.force_exit = True  # uvicorn: skip waiting for connections and tasks
    page.close(verbose=False)


__all__ = ["ServeOptions", "serve", "prepare_environment"]
