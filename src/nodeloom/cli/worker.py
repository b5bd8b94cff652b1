"""`nodeloom worker`: session processors with no HTTP server, one per device, on a root folder and its database."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any, get_args

from nodeloom.cli.root_arguments import add_database_argument, add_root_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_root_argument(parser)
    add_database_argument(parser)
    parser.add_argument(
        "--devices",
        default=None,
        metavar="LIST",
        help="the devices to run processors on, one processor each, comma-separated: auto, cpu, cuda, mps "
        "(default: the device setting)",
    )


def run(args: argparse.Namespace) -> int:
    # Imported here: every subcommand module is imported to build the parser, and `nodeloom run` stays light.
    from nodeloom.app.invocations import load_builtin_nodes
    from nodeloom.app.invocations.custom_nodes import load_custom_nodes
    from nodeloom.app.services.config.config_default import load_config
    from nodeloom.app.services.invocation_services import build_processor, build_services
    from nodeloom.app.services.invoker import Worker
    from nodeloom.app.services.shared.database.database_common import DatabaseError, MigrationError
    from nodeloom.backend.util.devices import DeviceName

    overrides: dict[str, Any] = {} if args.db is None else {"database_url": args.db}
    config = load_config(args.root, **overrides)
    devices: list[str] = [config.device] if args.devices is None else args.devices.split(",")
    known = get_args(DeviceName)
    unknown = [device for device in devices if device not in known]
    if unknown or not devices:
        print(f"nodeloom worker: --devices takes a list of {', '.join(known)}; got {args.devices!r}", file=sys.stderr)
        return 2
    config.root.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    load_builtin_nodes()
    load_custom_nodes(config.nodes_path)
    try:
        services = build_services(config.model_copy(update={"device": devices[0]}))
    except (DatabaseError, MigrationError) as error:
        print(f"nodeloom worker: {error}", file=sys.stderr)
        return 1
    further: list[DeviceName] = devices[1:]  # type: ignore[assignment]  # checked against DeviceName above
    worker = Worker(services, [services.session_processor, *(build_processor(services, d) for d in further)])
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
