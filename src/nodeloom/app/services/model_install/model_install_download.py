"""Downloading a model's files over HTTP(S): streamed to disk, resumed with `Range` after a cut, checked against
the size announced, and refused for non-public addresses unless allowed."""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import httpcore
import httpx

from nodeloom.app.services.model_install.model_install_common import ModelDownloadAddressError, ModelDownloadError
from nodeloom.app.services.webhooks.webhooks_common import is_public

if TYPE_CHECKING:
    from pathlib import Path, PurePosixPath

    from httpcore._backends.base import SOCKET_OPTION

PARTIAL_SUFFIX = ".part"
"""A file being downloaded has this suffix until all of it is there."""

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-\d+/(\d+)$")
_UNSATISFIED_RANGE = re.compile(r"^bytes \*/(\d+)$")
_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# A cut connection is tried again, from where it stopped, this many times in all; connecting is not retried, so a
# wrong host fails at once.
_TRIES = 5
_RETRY_DELAY_S = 0.5


@dataclass(frozen=True)
class RemoteFile:
    """A file to download, and where it goes in the job's folder."""

    url: str
    path: PurePosixPath
    size: int | None = None
    """The size the source announced before the download (the hub's listing), checked once it is done."""


ProgressCallback = Callable[[int, int], None]
"""Called with the bytes on disk so far and the file's size (0 while unknown)."""


class FileDownloader:
    """Downloads one file at a time with `client`; `check_stop` is called between chunks and raises to stop."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def close(self) -> None:
        self._client.close()

    def fetch(
        self,
        file: RemoteFile,
        dest: Path,
        headers: Mapping[str, str],
        check_stop: Callable[[], None],
        progress: ProgressCallback,
    ) -> int:
        """Downloads `file` to `dest`, resuming from `dest` + `.part` if an earlier try left one; its size.
        Raises `ModelDownloadError` saying what failed."""
        partial = dest.with_name(dest.name + PARTIAL_SUFFIX)
        dest.parent.mkdir(parents=True, exist_ok=True)
        total = 0
        for attempt in range(1, _TRIES + 1):
            check_stop()
            try:
                total = self._get(file.url, partial, headers, check_stop, progress)
                break
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol, httpx.InvalidURL) as error:
                raise ModelDownloadError(f"Cannot connect to {_host(file.url)}: {error}") from error
            except httpx.TooManyRedirects as error:
                raise ModelDownloadError(f"{file.url} redirects too many times") from error
            except (httpx.TransportError, _ServerError) as error:
                if attempt == _TRIES:
                    raise ModelDownloadError(f"Downloading {file.url} failed {_TRIES} times: {error}") from error
                time.sleep(_RETRY_DELAY_S * attempt)
        size = partial.stat().st_size
        expected = file.size if file.size is not None else total
        if expected and size != expected:
            partial.unlink()
            raise ModelDownloadError(f"{file.url} gave {size} bytes, but its size is {expected} bytes")
        partial.replace(dest)
        return size

    def _get(
        self,
        url: str,
        partial: Path,
        headers: Mapping[str, str],
        check_stop: Callable[[], None],
        progress: ProgressCallback,
    ) -> int:
        """Appends the rest of the file to `partial`; the file's size, 0 if the server does not tell it."""
        done = partial.stat().st_size if partial.exists() else 0
        # Identity: the announced size is then the size on disk.
        request_headers = {**headers, "Accept-Encoding": "identity"}
        if done:
            request_headers["Range"] = f"bytes={done}-"
        with self._client.stream("GET", url, headers=request_headers, follow_redirects=True) as response:
            if response.status_code == 416 and done:
                unsatisfied = _UNSATISFIED_RANGE.match(response.headers.get("Content-Range", ""))
                if unsatisfied and int(unsatisfied.group(1)) == done:
                    return done
                partial.unlink()
                raise _ServerError(f"{url} refused to resume at byte {done}")
            if response.status_code >= 500:
                raise _ServerError(f"{url} answered {response.status_code} {response.reason_phrase}")
            if response.status_code >= 400:
                raise ModelDownloadError(f"{url} answered {response.status_code} {response.reason_phrase}")
            content_range = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if response.status_code == 206 and content_range and int(content_range.group(1)) == done:
                total = int(content_range.group(2))
            else:
                # The server sent the whole file (it ignores ranges): start again.
                done = 0
                total = int(response.headers.get("Content-Length", 0))
            progress(done, total)
            with partial.open("ab" if done else "wb") as stream:
                # Chunks as they arrive, so a cancel or pause is seen at once even on a slow connection.
                for chunk in response.iter_bytes():
                    check_stop()
                    stream.write(chunk)
                    done += len(chunk)
                    progress(done, total)
        return total


class _ServerError(Exception):
    """A failure that trying again may cure: a 5xx answer, or a resume the server refused."""


def _host(url: str) -> str:
    try:
        return httpx.URL(url).host or url
    except httpx.InvalidURL:
        return url


def file_name(url: str) -> str:
    """The name a URL's file is saved under: the last part of its path, decoded, and of that what follows its last
    slash (an encoded one included), so the name never leads out of the job's folder."""
    name = unquote(urlsplit(url).path.rstrip("/").rpartition("/")[2]).replace("\\", "/").rpartition("/")[2]
    if name in ("", ".", "..") or "\0" in name:
        return "model"
    return name


def hub_client() -> httpx.Client:
    """The client for the Hugging Face hub's files: the hub is the configured endpoint, so any address is allowed,
    and proxies are taken from the environment as huggingface_hub does."""
    return httpx.Client(timeout=httpx.Timeout(30.0, connect=10.0))


def download_client(allow_private: bool) -> httpx.Client:
    """The client for URLs that clients name: it connects only to public addresses unless `allow_private`, checked
    on the address it connects to (redirects included), so a name that resolves to a private address is refused."""
    if allow_private:
        return httpx.Client(timeout=_TIMEOUT)
    return httpx.Client(timeout=_TIMEOUT, transport=_PublicOnlyTransport(), trust_env=False)


class _PublicOnlyTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__(trust_env=False)
        # httpx takes no network backend: its pool is replaced by one that connects through the checking backend.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False), network_backend=_PublicOnlyBackend()
        )


class _PublicOnlyBackend(httpcore.SyncBackend):
    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise httpcore.ConnectError(f"cannot resolve {host}: {error.strerror}") from error
        addresses = [str(info[4][0]) for info in infos]
        public = [address for address in addresses if is_public(ipaddress.ip_address(address.split("%")[0]))]
        if not public:
            raise ModelDownloadAddressError(
                f"{host} resolves to no public address: set model_download_allow_private to download from "
                "loopback and private addresses"
            )
        for address in public[:-1]:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError:
                continue
        return super().connect_tcp(public[-1], port, timeout, local_address, socket_options)
