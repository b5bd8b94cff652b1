"""`nodeloom tokens` on a root folder, and the client commands' `--token` and `NODELOOM_TOKEN`, as subprocesses
against a real server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.cli.test_client_commands import ADD_GRAPH, enqueued_ids, nodeloom, write
from tests.conftest import LiveServer


def tokens(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return nodeloom("tokens", *args, "--root", root)


def test_tokens_are_created_listed_and_revoked_in_the_root_s_database(tmp_path: Path) -> None:
    root = tmp_path / "root"
    missing = tokens(root, "list")
    assert missing.returncode == 1 and f"there is no root folder at {root}" in missing.stderr
    root.mkdir()
    assert tokens(root, "list").stdout == ""

    created = tokens(root, "create", "ci")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("nlt_") and "shown this once" in created.stderr
    assert tokens(root, "create", "ci").stderr.strip() == (
        "nodeloom tokens create: A token is named 'ci' already: revoke it first, or choose another name"
    )

    listing = tokens(root, "list", "--json")
    (entry,) = json.loads(listing.stdout)
    assert entry["name"] == "ci" and set(entry) == {"token_id", "name", "created_at"}
    table = tokens(root, "list").stdout
    assert entry["token_id"] in table and "ci" in table and token not in table

    revoked = tokens(root, "revoke", entry["token_id"])
    assert revoked.stdout.strip() == f"revoked token 'ci' ({entry['token_id']})"
    unknown = tokens(root, "revoke", "ci")
    assert unknown.returncode == 1 and "No token has the id or name 'ci'" in unknown.stderr


def test_the_client_commands_send_the_token_from_the_option_or_the_environment(
    live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = live_server(auth_tokens=["the-token-of-this-test-0123"])
    with_env = {**os.environ, "NODELOOM_TOKEN": "the-token-of-this-test-0123"}
    without_env = {name: value for name, value in os.environ.items() if name != "NODELOOM_TOKEN"}
    url = ("--url", server.url)

    refused = nodeloom("queue", "status", *url, env=without_env)
    assert refused.returncode == 1
    assert "401 Unauthorized" in refused.stderr and "--token or $NODELOOM_TOKEN" in refused.stderr
    wrong = nodeloom("queue", "status", *url, "--token", "wrong", env=with_env)
    assert wrong.returncode == 1 and "401 Unauthorized" in wrong.stderr
    assert nodeloom("models", "list", *url, env=without_env).returncode == 1

    assert nodeloom("queue", "status", *url, "--token", "the-token-of-this-test-0123", env=without_env).returncode == 0
    assert nodeloom("queue", "status", *url, env=with_env).returncode == 0
    listed = nodeloom("models", "list", *url, "--json", env=with_env)
    assert (listed.returncode, json.loads(listed.stdout)) == (0, {"models": []})

    # --wait follows the batch over socket.io, which takes the token too.
    waited = nodeloom("enqueue", write(tmp_path, "g.json", ADD_GRAPH), "--wait", *url, env=with_env)
    assert waited.returncode == 0, waited.stderr
    assert "No live progress" not in waited.stderr
    _, (item_id,) = enqueued_ids(waited.stdout)
    stats = nodeloom("stats", str(item_id), *url, "--json", env=with_env)
    assert stats.returncode == 0, stats.stderr
    assert {node["node_type"] for node in json.loads(stats.stdout)["node_stats"]} == {"integer", "add"}


def test_the_token_option_is_documented_without_its_value() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "nodeloom", "queue", "status", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NODELOOM_TOKEN": "do-not-print-me"},
        check=True,
    ).stdout
    assert "--token" in help_text and "$NODELOOM_TOKEN" in help_text and "do-not-print-me" not in help_text
