"""The arguments of the subcommands that open a root folder and its database themselves, not through a server."""

from __future__ import annotations

import argparse
from pathlib import Path

from nodeloom.backend.util.devices import DeviceName, parse_devices


def add_root_argument(parser: argparse.ArgumentParser) -> None:
    """`--root`, the root folder, into `args.root` (None: the configuration's default)."""
    parser.add_argument(
        "--root", type=Path, default=None, help="the root folder (default: $NODELOOM_ROOT or ./.nodeloom)"
    )


def add_database_argument(parser: argparse.ArgumentParser) -> None:
    """`--db`, a PostgreSQL URL, into `args.db` (None: the configuration's database)."""
    parser.add_argument(
        "--db",
        default=None,
        metavar="URL",
        help="a postgresql:// URL of the database (default: $NODELOOM_DATABASE_URL, else the root's SQLite file)",
    )


def add_devices_argument(parser: argparse.ArgumentParser) -> None:
    """`--devices`, the devices to run a processor on each, into `args.devices` (None: the configuration's)."""
    parser.add_argument(
        "--devices",
        type=_devices,
        default=None,
        metavar="LIST",
        help="the devices to run processors on, one each, comma-separated: auto, cpu, mps, cuda, cuda:N "
        "(default: the devices setting, else the device setting)",
    )


def _devices(text: str) -> list[DeviceName]:
    try:
        return parse_devices(text)
    except ValueError as error:  # argparse shows this kind's message as it is, and exits 2
        raise argparse.ArgumentTypeError(str(error)) from error
