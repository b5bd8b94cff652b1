"""Custom node packs: each package (a folder with `__init__.py`) and each `.py` file in the root's `nodes/`."""

from __future__ import annotations

import importlib.util
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

PACKAGE_PREFIX = "nodeloom_custom_nodes"


@dataclass
class CustomNodesReport:
    loaded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def load_custom_nodes(folder: Path) -> CustomNodesReport:
    """Imports every node pack in `folder`, in name order; one that fails is logged and skipped."""
    report = CustomNodesReport()
    if not folder.is_dir():
        return report
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
            report.loaded.append(path.name)
            continue
        spec = importlib.util.spec_from_file_location(
            module_name, entry, submodule_search_locations=[str(path)] if entry.name == "__init__.py" else None
        )
        if spec is None or spec.loader is None:
            report.failed[path.name] = "not an importable Python module"
            continue
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            del sys.modules[module_name]
            report.failed[path.name] = f"{type(e).__name__}: {e}"
            logger.exception("Skipping the node pack %s: it failed to import", path.name)
            continue
        report.loaded.append(path.name)
        logger.info("Loaded the node pack %s", path.name)
    return report
