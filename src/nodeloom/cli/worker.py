"""`nodeloom worker`: session processors with no HTTP server, one per device, on a root folder and its database."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import FrameType

from nodeloom.cli.root_arguments import add_database_argument, add_devices_argument, add_root_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_root_argument(parser)
    add_database_argument(parser)
    add_devices_argument(parser)


def run(args: argparse.Namespace) -> int:
    # Imported here: every subcommand module is imported to build the parser, and `nodeloom run` stays light.
    from nodeloom.app.services.config.config_default import load_config
    from nodeloom.app.services.invoker import LOG_FORMAT, build_worker
    from nodeloom.app.services.shared.database.database_common import DatabaseError, MigrationError

    given = (("database_url", args.db), ("devices", args.devices))
    config = load_config(args.root, **{k: v for k, v in given if v is not None})
    devices = config.device_list
    config.root.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=config.log_level.upper(), format=LOG_FORMAT)
    try:
        worker = build_worker(config, devices)
    except (DatabaseError, MigrationError) as error:
        print(f"nodeloom worker: {error}", file=sys.stderr)
        return 1
    stop = _stop_on_signals()
    worker.start()
    logging.getLogger(__name__).info(
        "nodeloom worker %d running %d processor(s) on %s", os.getpid(), len(worker.processors), ", ".join(devices)
    )
    stop.wait()
    worker.stop()
    return 0


def _stop_on_signals() -> threading.Event:
    """Set by the first Ctrl-C or SIGTERM; a second one exits at once, leaving the items in progress to recovery."""
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            os._exit(128 + signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handle)
    return stop
