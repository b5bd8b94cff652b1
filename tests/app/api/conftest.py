from __future__ import annotations

from collections.abc import Callable

import pytest
from tests.conftest import LiveServer


@pytest.fixture
def server(live_server: Callable[..., LiveServer]) -> LiveServer:
    """A running server with the default settings."""
    return live_server()
