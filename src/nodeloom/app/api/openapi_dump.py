"""Prints the API's OpenAPI schema as JSON without serving it: the web UI generates its types from it.

`python -m nodeloom.app.api.openapi_dump > openapi.json`. Only the built-in nodes are loaded, so the schema is the
same on every machine whatever custom nodes a root holds.
"""

from __future__ import annotations

import json
import sys

from nodeloom.app.api.app import create_app
from nodeloom.app.invocations import load_builtin_nodes
from nodeloom.app.services.config.config_default import NodeloomConfig


def openapi_json() -> str:
    load_builtin_nodes()
    schema = create_app(NodeloomConfig()).openapi()
    return json.dumps(schema, indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(openapi_json())
