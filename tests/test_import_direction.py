"""Dependencies run one way: cli and api → services → invocations → backend.

Every import in `src/nodeloom` is read with `ast` (those under `TYPE_CHECKING` too: they are dependencies all the
same, and the ones a cycle hides behind first), and checked against the rules of docs/architecture.md.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import nodeloom

PACKAGE_ROOT = Path(nodeloom.__file__).parent

_SERVICE_MODULE = re.compile(r"nodeloom\.app\.services\.(?P<service>\w+)\.(?P<module>\w+)")
# The settings model: the config service has no base and no other implementation, and every part reads it.
_SETTINGS = "nodeloom.app.services.config.config_default"


def module_name(path: Path, root: Path) -> str:
    parts = (root.name, *path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path, root: Path) -> Iterator[tuple[str, int]]:
    """Each module `path` imports, with its line; for `from m import n`, both `m` and `m.n` (n may be a module)."""
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package.pop()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            yield module, node.lineno
            for alias in node.names:
                yield f"{module}.{alias.name}", node.lineno


def is_service_implementation(name: str) -> bool:
    """A service's implementation (`{service}_{impl}.py`), or a module of the composition root that wires them."""
    if name in (
        "nodeloom.app.services.invocation_services",
        "nodeloom.app.services.image_services",
        "nodeloom.app.services.invoker",
    ):
        return True
    match = _SERVICE_MODULE.fullmatch(name)
    if match is None or match["service"] == "shared" or name == _SETTINGS:
        return False
    return not match["module"].endswith(("_base", "_common"))


def violations(root: Path) -> list[str]:
    """Every import in the package at `root` that goes against the direction, as 'module:line imports name (rule)'."""
    found: dict[tuple[str, int, str], str] = {}
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        stem = path.stem
        for name, line in imported_names(path, root):
            rule = None
            if module.startswith("nodeloom.backend") and name.startswith(("nodeloom.app", "nodeloom.cli")):
                rule = "backend imports nothing from app or cli"
            elif module.startswith(("nodeloom.app.services", "nodeloom.app.invocations")) and name.startswith(
                ("nodeloom.app.api", "nodeloom.cli")
            ):
                rule = "services and invocations never import the api or the cli"
            elif module.startswith("nodeloom.app.invocations") and is_service_implementation(name):
                rule = "invocations never import a service implementation"
            elif module.startswith("nodeloom.app.services.shared") and is_service_implementation(name):
                rule = "services/shared never imports a service implementation"
            elif stem.endswith(("_base", "_common")) and is_service_implementation(name):
                rule = "a *_base or *_common module never imports an implementation"
            if rule is not None:
                found.setdefault((module, line, rule), f"{module}:{line} imports {name} ({rule})")
    return list(found.values())


def test_dependencies_run_one_way() -> None:
    assert violations(PACKAGE_ROOT) == []


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_each_rule_finds_what_breaks_it(tmp_path: Path) -> None:
    root = tmp_path / "nodeloom"
    write(root, "backend/model_manager/probe.py", "from nodeloom.app.services.x import x_common\n")
    write(root, "app/invocations/math.py", "if TYPE_CHECKING:\n    from nodeloom.app.services.x.x_sql import X\n")
    write(root, "app/services/x/x_common.py", "from nodeloom.app.services.y import y_default\nfrom .x_sql import X\n")
    write(root, "app/services/x/x_base.py", "import nodeloom.app.services.invocation_services\n")
    write(root, "app/services/shared/graph.py", "from nodeloom.cli.run_graph import execute\n")
    # Allowed: commons, bases, shared modules and backend types, the settings model, implementations in the api.
    write(root, "app/services/y/y_base.py", "from nodeloom.app.services.x.x_common import A\n")
    write(root, "app/services/y/y_common.py", "from nodeloom.backend.model_manager.configs import AnyModelConfig\n")
    write(root, "app/services/shared/context.py", "from nodeloom.app.services.y.y_base import YBase\n")
    write(root, "app/invocations/strings.py", "from nodeloom.app.services.config.config_default import C\n")
    write(root, "app/api/app.py", "from nodeloom.app.services.invocation_services import build_services\n")
    assert violations(root) == [
        "nodeloom.app.invocations.math:2 imports nodeloom.app.services.x.x_sql "
        "(invocations never import a service implementation)",
        "nodeloom.app.services.shared.graph:1 imports nodeloom.cli.run_graph "
        "(services and invocations never import the api or the cli)",
        "nodeloom.app.services.x.x_base:1 imports nodeloom.app.services.invocation_services "
        "(a *_base or *_common module never imports an implementation)",
        "nodeloom.app.services.x.x_common:1 imports nodeloom.app.services.y.y_default "
        "(a *_base or *_common module never imports an implementation)",
        "nodeloom.app.services.x.x_common:2 imports nodeloom.app.services.x.x_sql "
        "(a *_base or *_common module never imports an implementation)",
        "nodeloom.backend.model_manager.probe:1 imports nodeloom.app.services.x "
        "(backend imports nothing from app or cli)",
    ]
