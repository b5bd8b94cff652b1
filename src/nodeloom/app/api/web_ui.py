"""The web UI: the files `web/` builds into the package (`nodeloom/web/dist`), served at `/`.

`index.html` answers `/` and each of the UI's own routes, so a deep link loads the app; it is never cached, so a
new build shows at the next load. The files under `/assets/` (Vite writes them there, flat) carry a hash of their
content in their names, so a browser may keep them for a year. Every other path is left to the API: these routes
are added after its routers, and name only the UI's paths.
"""

from __future__ import annotations

import gzip
import mimetypes
from functools import lru_cache
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response

import nodeloom

DIST = Path(nodeloom.__file__).parent / "web" / "dist"
UI_ROUTES = ("/", "/queue", "/gallery", "/models")
"""The client routes of the UI: each loads index.html, which shows the page the address names."""
ASSETS_PREFIX = "/assets/"
ASSET_CACHE_CONTROL = "public, max-age=31536000, immutable"
_COMPRESSIBLE = frozenset({".js", ".css", ".svg", ".json"})


def is_ui_path(path: str) -> bool:
    """Whether `path` is one of the UI's files, which hold no data and are served without a token."""
    return path in UI_ROUTES or path.startswith(ASSETS_PREFIX)


@lru_cache(maxsize=32)
def _gzipped(path: Path, modified_ns: int) -> bytes:
    """The file compressed, once per version of it: the scripts shrink to a third, and the UI loads faster."""
    return gzip.compress(path.read_bytes(), compresslevel=9, mtime=0)


def mount_web_ui(app: FastAPI, dist: Path = DIST) -> None:
    """Adds the UI's routes to `app`; without a build, they say how to make one."""
    index = dist / "index.html"

    def index_page() -> Response:
        if not index.is_file():
            return PlainTextResponse(
                "The web UI is not built: run `make web` in a source checkout (it needs Node.js)", status_code=404
            )
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    def asset(name: str, request: Request) -> Response:
        # `name` holds no slash (the route's parameter stops at one) and Vite writes no hidden file.
        path = dist / "assets" / name
        if name.startswith(".") or not path.is_file():
            raise HTTPException(status_code=404, detail=f"No file {ASSETS_PREFIX}{name} in the web UI")
        if path.suffix in _COMPRESSIBLE and "gzip" in request.headers.get("accept-encoding", ""):
            return Response(
                _gzipped(path, path.stat().st_mtime_ns),
                media_type=mimetypes.guess_type(name)[0],
                headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding", "Cache-Control": ASSET_CACHE_CONTROL},
            )
        return FileResponse(path, headers={"Cache-Control": ASSET_CACHE_CONTROL, "Vary": "Accept-Encoding"})

    for route in UI_ROUTES:
        app.add_api_route(route, index_page, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_api_route(ASSETS_PREFIX + "{name}", asset, methods=["GET", "HEAD"], include_in_schema=False)
