"""torch, diffusers and transformers load only with the first model: a server that runs core nodes never pays for
them, and probing a safetensors model reads its header alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.tiny_model import write_lora


def test_building_the_services_and_installing_a_safetensors_model_import_no_torch(tmp_path: Path) -> None:
    lora = write_lora(tmp_path / "ink.safetensors")
    script = f"""
import sys
import nodeloom.app.api.app
from nodeloom.app.services.config.config_default import load_config
from nodeloom.app.services.invocation_services import build_services
services = build_services(load_config({str(tmp_path / "root")!r}, model_install_roots=[{str(tmp_path)!r}]))
config = services.model_manager.install.install_path({str(lora)!r})
assert config.base == "sd-1", config
services.database.close()
heavy = [name for name in ("torch", "diffusers", "transformers", "safetensors") if name in sys.modules]
assert not heavy, heavy
"""
    result = subprocess.run([sys.executable, "-W", "error", "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
