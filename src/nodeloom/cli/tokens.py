"""`nodeloom tokens ACTION`: create, list and revoke the API tokens of a root folder, in its database.

No server is needed: a running server accepts a new token, and refuses a revoked one, within a second.
"""

from __future__ import annotations

import argparse
import sys

from nodeloom.cli.client import print_json
from nodeloom.cli.root_arguments import add_root_argument
from nodeloom.errors import NodeloomError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help_text, description=help_text)
        add_root_argument(sub)
        return sub

    add("create", "Make a token and print it, once: only its hash is kept").add_argument(
        "name", metavar="NAME", help="what the token is for, unique among the tokens"
    )
    add("list", "The tokens' ids, names and creation times (never the tokens)").add_argument(
        "--json", action="store_true", help="print JSON instead of a table"
    )
    add("revoke", "Remove a token: requests sending it are refused from then on").add_argument(
        "token", metavar="ID|NAME", help="the token's id, or else its name"
    )


def run(args: argparse.Namespace) -> int:
    # Imported here: every subcommand module is imported to build the parser.
    from nodeloom.app.services.auth_tokens.auth_tokens_sql import SqlAuthTokenStore
    from nodeloom.app.services.config.config_default import load_config
    from nodeloom.app.services.invocation_services import open_database

    config = load_config(args.root)
    if not config.root.is_dir():
        # A token made in a root no server uses would let no one in: a mistyped --root is more likely.
        print(f"nodeloom tokens: there is no root folder at {config.root}", file=sys.stderr)
        return 1
    try:
        database = open_database(config)
        try:
            store = SqlAuthTokenStore(database)
            if args.action == "create":
                created = store.create(args.name)
                print(created.token)
                print(
                    f"Token '{created.name}' ({created.token_id}) created: it is shown this once, keep it now.",
                    file=sys.stderr,
                )
            elif args.action == "list":
                tokens = store.list()
                if args.json:
                    print_json([token.model_dump() for token in tokens])
                else:
                    for token in tokens:
                        print(f"{token.token_id}  {token.created_at}  {token.name}")
                    if not tokens:
                        print("No tokens in this root's database.", file=sys.stderr)
            else:
                revoked = store.revoke(args.token)
                print(f"revoked token '{revoked.name}' ({revoked.token_id})")
        finally:
            database.close()
    except NodeloomError as e:
        print(f"nodeloom tokens {args.action}: {e}", file=sys.stderr)
        return 1
    return 0
