"""The built-in node library. `load_builtin_nodes()` registers every built-in node type."""

from __future__ import annotations

import importlib

BUILTIN_MODULES = (
    "special",
    "primitives",
    "math",
    "strings",
    "collections",
    "image",
    "model",
    "sdxl",
    "compel",
    "noise",
    "latents",
    "denoise_latents",
    "metadata",
)


def load_builtin_nodes() -> None:
    """Imports the built-in node modules, which register their node types; later calls do nothing."""
    for name in BUILTIN_MODULES:
        importlib.import_module(f"{__name__}.{name}")
