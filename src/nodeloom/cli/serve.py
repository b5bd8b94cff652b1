"""`nodeloom serve`: the HTTP API and socket.io events on one root folder, with a worker process per device that
runs the sessions."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from typing import Any

from nodeloom.cli.root_arguments import add_database_argument, add_devices_argument, add_root_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_root_argument(parser)
    parser.add_argument("--host", default=None, help="the address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="the port to listen on (default 9090)")
    add_database_argument(parser)
    parser.add_argument(
        "--no-processor",
        action="store_true",
        help="serve the API only, running no session: `nodeloom worker` processes on the same database run them",
    )
    add_devices_argument(parser)


def run(args: argparse.Namespace) -> int:
    # Imported here: every subcommand module is imported to build the parser, and `nodeloom run` stays light.
    from nodeloom.app.api.app import create_server
    from nodeloom.app.services.config.config_default import load_config
    from nodeloom.app.services.invocation_services import open_database
    from nodeloom.app.services.invoker import LOG_FORMAT
    from nodeloom.app.services.shared.database.database_common import DatabaseError, MigrationError

    given = (("host", args.host), ("port", args.port), ("database_url", args.db), ("devices", args.devices))
    overrides: dict[str, Any] = {k: v for k, v in given if v is not None}
    if args.no_processor:
        overrides["run_processor"] = False
    config = load_config(args.root, **overrides)
    config.root.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=config.log_level.upper(), format=LOG_FORMAT)
    try:
        # Opened and migrated before the server starts, where a failure would be a traceback in its start-up.
        open_database(config).close()
    except (DatabaseError, MigrationError) as error:
        print(f"nodeloom serve: {error}", file=sys.stderr)
        return 1
    # `Server.run` shuts down cleanly on Ctrl-C, then raises it again for its caller; `uvicorn.run` swallows it too.
    with contextlib.suppress(KeyboardInterrupt):
        create_server(config).run()
    return 0
