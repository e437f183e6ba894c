"""``ipassr serve``: a web page to try stereo super-resolution on your photos (ipassr[web]).

Serve a page where you upload a stereo photo (MPO, JPS, spatial HEIC, a picture with both views,
or two pictures) and see bicubic against SR, the valid masks, an anaglyph and where the network
finds each pixel's match; download the SR pair. Works offline; binds to this computer only unless
--host says otherwise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import add_command, memory_size, option_type
from ..sizes import parse_memory_size


def add_parser(subparsers) -> None:
    parser = add_command(subparsers, run, __doc__, weights=False)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this computer only; "
                             "0.0.0.0 opens it to your network)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--max-memory", type=memory_size, default=2 * 2 ** 30,
                        help="activation memory for one pair, e.g. 2G (default); a pair that "
                             "cannot fit is refused with the figure it needs")
    parser.add_argument("--weights-dir", type=Path,
                        help="also offer every weights file in this folder (iPASSR, NAFSSR or "
                             "PASSRnet checkpoints, or ipassr train's .safetensors)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--max-upload", type=option_type(parse_memory_size), default=30 * 2 ** 20,
                        help="largest upload per file, e.g. 30M (default)")
    parser.add_argument("--max-pixels", type=float, default=24.0,
                        help="largest picture in an upload, in megapixels (default 24)")
    parser.add_argument("--queue-size", type=int, default=4,
                        help="pairs that may wait while one runs; more are told the server is "
                             "busy (default 4)")


def run(args: argparse.Namespace) -> int:
    from ..errors import IpassrError
    from ..serve.server import ServeOptions, serve
    from ..serve.uploads import Limits

    if not 0 < args.port < 65536:
        raise IpassrError(f"--port {args.port}: expected 1..65535")
    if args.queue_size < 0 or args.max_pixels <= 0:
        raise IpassrError("--queue-size must be >= 0 and --max-pixels > 0")
    limits = Limits(max_bytes=args.max_upload, max_pixels=int(args.max_pixels * 1e6))
    serve(ServeOptions(args.host, args.port, args.max_memory, args.weights_dir, args.device,
                       limits, args.queue_size))
    return 0
