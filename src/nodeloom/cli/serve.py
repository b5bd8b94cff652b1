"""`nodeloom serve`: the HTTP API, socket.io events and the session processor, on one root folder."""

from __future__ import annotations

import argparse
import contextlib
import logging
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root", type=Path, default=None, help="the root folder (default: $NODELOOM_ROOT or ./.nodeloom)"
    )
    parser.add_argument("--host", default=None, help="the address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="the port to listen on (default 9090)")


def run(args: argparse.Namespace) -> int:
    # Imported here: every subcommand module is imported to build the parser, and `nodeloom run` stays light.
    from nodeloom.app.api.app import create_server
    from nodeloom.app.services.config.config_default import load_config

    overrides: dict[str, Any] = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    config = load_config(args.root, **overrides)
    config.root.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # `Server.run` shuts down cleanly on Ctrl-C, then raises it again for its caller; `uvicorn.run` swallows it too.
    with contextlib.suppress(KeyboardInterrupt):
        create_server(config).run()
    return 0
