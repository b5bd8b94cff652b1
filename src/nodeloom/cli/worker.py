"""`nodeloom worker`: session processors with no HTTP server, one per device, on a root folder and its database."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root", type=Path, default=None, help="the root folder (default: $NODELOOM_ROOT or ./.nodeloom)"
    )
    parser.add_argument(
        "--db",
        default=None,
        metavar="URL",
        help="a postgresql:// URL of the database (default: $NODELOOM_DATABASE_URL, else the root's SQLite file)",
    )
    add_devices_argument(parser)


def add_devices_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--devices",
        default=None,
        metavar="LIST",
        help="the devices to run processors on, one each, comma-separated: auto, cpu, mps, cuda, cuda:N "
        "(default: the devices setting, else the device setting)",
    )


def run(args: argparse.Namespace) -> int:
    # Imported here: every subcommand module is imported to build the parser, and `nodeloom run` stays light.
    from nodeloom.app.services.config.config_default import load_config
    from nodeloom.app.services.invoker import LOG_FORMAT, build_worker
    from nodeloom.app.services.shared.database.database_common import DatabaseError, MigrationError
    from nodeloom.backend.util.devices import parse_devices

    overrides: dict[str, Any] = {} if args.db is None else {"database_url": args.db}
    if args.devices is not None:
        try:
            overrides["devices"] = parse_devices(args.devices)
        except ValueError as error:
            print(f"nodeloom worker: --devices: {error}", file=sys.stderr)
            return 2
    config = load_config(args.root, **overrides)
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
