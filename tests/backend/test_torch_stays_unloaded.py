"""torch, diffusers and transformers load only with the first model: the app, the CLI, the services and the built-in
nodes import without them, and probing a safetensors model reads its header alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.tiny_model import write_lora

# The only modules that import torch at module level (see `nodeloom/backend/__init__.py`): nodes import them inside
# `invoke`.
TORCH_AT_IMPORT = ("denoise", "lora", "noise", "preview", "prompts", "seamless", "textual_inversion", "vae")


def test_every_other_module_and_installing_a_safetensors_model_import_no_torch(tmp_path: Path) -> None:
    lora = write_lora(tmp_path / "ink.safetensors")
    script = f"""
import importlib
import pkgutil
import sys
import nodeloom
from nodeloom.app.invocations import load_builtin_nodes
from nodeloom.app.services.config.config_default import load_config
from nodeloom.app.services.invocation_services import build_services

skipped = {{"nodeloom.__main__", *(f"nodeloom.backend.stable_diffusion.{{name}}" for name in {TORCH_AT_IMPORT!r})}}
for module in pkgutil.walk_packages(nodeloom.__path__, "nodeloom."):
    if module.name not in skipped:
        importlib.import_module(module.name)
load_builtin_nodes()
services = build_services(load_config({str(tmp_path / "root")!r}, model_install_roots=[{str(tmp_path)!r}]))
config = services.model_manager.install.install_path({str(lora)!r})
assert config.base == "sd-1", config
services.database.close()
heavy = [name for name in ("torch", "diffusers", "transformers", "safetensors") if name in sys.modules]
assert not heavy, heavy
"""
    result = subprocess.run([sys.executable, "-W", "error", "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
