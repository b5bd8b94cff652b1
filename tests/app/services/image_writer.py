"""A writer of image files in a process of its own, as a worker sharing the outputs folder is, held midway."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Literal

_WRITER = """
import sys
from pathlib import Path
from PIL import Image
from nodeloom.app.services.image_files.image_files_disk import DiskImageFileStorage
from nodeloom.app.services.shared.atomic_files import write_atomically

folder, name, step = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
files = DiskImageFileStorage(folder)

def hold(*_):
    print("holding", flush=True)
    sys.stdin.readline()

try:
    if step == "file":
        write_atomically(files.get_path(name), lambda file: (file.write(b"half an image"), hold()))
    else:
        with files.saving(Image.new("RGB", (4, 4), (1, 2, 3)), name):
            hold()
except Exception as error:
    print(f"failed: {error!r}", flush=True)
else:
    print("done", flush=True)
"""


class ImageWriter:
    """Writes the image `name` into `folder` and stops midway until `go_on()`: in the middle of its file (`file`),
    or with its files written and its record to write (`record`)."""

    def __init__(self, folder: Path, name: str, step: Literal["file", "record"]) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(folder), name, step],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        assert self._process.stdout.readline().strip() == "holding"

    def go_on(self) -> str:
        """Lets it finish; how its write ended: `done`, or `failed: ...`."""
        outcome, _ = self._process.communicate("\n", timeout=30)
        return outcome.strip()

    def kill(self) -> None:
        """Kills it where it stands, as a crash would: nothing of its own cleanup runs."""
        self._process.kill()
        self._process.communicate(timeout=30)
