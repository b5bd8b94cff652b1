from __future__ import annotations

from nodeloom.app.invocations import load_builtin_nodes

load_builtin_nodes()
import tests.nodes  # noqa: E402,F401  registers the test-only node types
