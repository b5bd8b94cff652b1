"""The arguments of the subcommands that open a root folder and its database themselves, not through a server."""

from __future__ import annotations

import argparse
from pathlib import Path


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
