"""Custom node packs: each package (a folder with `__init__.py`) and each `.py` file in the root's `nodes/`."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

PACKAGE_PREFIX = "nodeloom_custom_nodes"


def load_custom_nodes(folder: Path) -> None:
    """Imports every node pack in `folder`, in name order; one that fails is logged with its traceback and skipped."""
    if not folder.is_dir():
        return
    for path in sorted(folder.iterdir()):
        if path.name.startswith((".", "_")):
            continue
        if path.is_dir() and (path / "__init__.py").is_file():
            entry = path / "__init__.py"
        elif path.is_file() and path.suffix == ".py":
            entry = path
        else:
            continue
        module_name = f"{PACKAGE_PREFIX}.{path.stem}"
        if module_name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(
            module_name, entry, submodule_search_locations=[str(path)] if entry.name == "__init__.py" else None
        )
        if spec is None or spec.loader is None:
            logger.error("Skipping the node pack %s: it is not an importable Python module", path.name)
            continue
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception:
            del sys.modules[module_name]
            logger.exception("Skipping the node pack %s: it failed to import", path.name)
            continue
        logger.info("Loaded the node pack %s", path.name)
