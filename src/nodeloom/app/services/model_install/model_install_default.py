"""The model install service: probes models on disk and records them, and runs install jobs that download a
model from a URL or a Hugging Face repo first."""

from __future__ import annotations

import concurrent.futures
import enum
import logging
import os
import shutil
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from nodeloom.app.services.events.events_common import (
    ModelInstallCancelledEvent,
    ModelInstallCompleteEvent,
    ModelInstallDownloadProgressEvent,
    ModelInstallDownloadsCompleteEvent,
    ModelInstallDownloadStartedEvent,
    ModelInstallErrorEvent,
    ModelInstallStartedEvent,
)
from nodeloom.app.services.model_install.model_install_base import ModelInstallServiceBase
from nodeloom.app.services.model_install.model_install_common import (
    TERMINAL_STATUSES,
    DownloadJobStatus,
    DownloadPart,
    FoundModel,
    HFModelSource,
    InstallJobStateError,
    InstallStatus,
    LocalModelSource,
    ModelBaseUnknownError,
    ModelInstallJob,
    ModelPathNotAllowedError,
    ModelSettingUnknownError,
    OrphanedModelInfo,
    ScanTooLargeError,
    UnknownInstallJobError,
    URLModelSource,
    parse_source,
)
from nodeloom.app.services.model_install.model_install_download import (
    FileDownloader,
    RemoteFile,
    download_client,
    file_name,
    hub_client,
)
from nodeloom.app.services.model_install.model_install_hf import repo_files
from nodeloom.app.services.model_install.model_install_scan import describe_orphan, find_models
from nodeloom.app.services.model_records.model_records_common import DuplicateModelError, ModelRecordChanges
from nodeloom.app.services.shared.atomic_files import Hold, new_held_folder, remove_unheld_folders
from nodeloom.backend.model_manager.configs import validate_model_config
from nodeloom.backend.model_manager.errors import InvalidModelError, ModelPathNotFoundError
from nodeloom.backend.model_manager.model_files import copy_model, hash_model, size_on_disk
from nodeloom.backend.model_manager.probe import probe_model
from nodeloom.backend.model_manager.taxonomy import BaseModelType
from nodeloom.errors import NodeloomError

if TYPE_CHECKING:
    from nodeloom.app.services.events.events_base import EventServiceBase
    from nodeloom.app.services.model_records.model_records_base import ModelRecordServiceBase
    from nodeloom.backend.model_manager.configs import AnyModelConfig

logger = logging.getLogger(__name__)

DOWNLOADS_FOLDER = ".download-tmp"
"""The folder in the models folder where jobs download, one folder each: on the same disk, so a finished model
moves into place without a copy. Hidden, so scans pass over it."""
_FILES_FOLDER = "files"
"""Where in a job's folder its files download: beside, not among, the folder's lock file, whatever they are named."""

_WORKERS = 2
"""Jobs running at once: a long download leaves a worker for the next job."""
_PROGRESS_INTERVAL_S = 0.25
"""The most often a job's download progress is sent."""


@dataclass(frozen=True)
class DownloadSettings:
    """How jobs download: `allow_private` lets URL sources reach non-public addresses; `hf_token` is sent to the
    Hugging Face hub (None: huggingface_hub's own, HF_TOKEN or a stored login)."""

    allow_private: bool = False
    hf_token: str | None = None


class _Placement(enum.Enum):
    IN_PLACE = "in place"
    COPY = "copy"
    MOVE = "move"


class _Stop(enum.Enum):
    CANCEL = "cancel"
    PAUSE = "pause"


class _Stopped(Exception):
    def __init__(self, how: _Stop) -> None:
        super().__init__(how.value)
        self.how = how


@dataclass
class _Run:
    """What the service keeps about a job beside what it shows: how to stop it, its folder and its token."""

    job: ModelInstallJob
    access_token: str | None = None
    stop: _Stop | None = None
    folder: tuple[Path, Hold] | None = None
    """The job's download folder, held for as long as the job keeps it, paused included."""
    future: concurrent.futures.Future[None] | None = None
    last_progress: float = field(default=0.0)


class ModelInstallService(ModelInstallServiceBase):
    """Records models in `store`; copies, when asked for, go to `models_path/{base}/{type}/{name}`, recorded by
    their path relative to `models_path`, and so do downloaded models.

    Installs read only under `models_path` and `install_roots`, once every symlink is resolved: a path elsewhere
    is refused with `ModelPathNotAllowedError` before anything looks at it, so a client learns nothing of the
    server's other files, not even whether they exist.

    Jobs live in memory, as InvokeAI keeps them, and run on `_WORKERS` threads in the order they came. A job
    downloads into its own folder under `DOWNLOADS_FOLDER`, which is removed when it fails or is cancelled and
    kept while it is paused; the model moves into place only once every file is whole. The service holds its jobs'
    folders (`new_held_folder`), so the start-up of another service on the same models folder, which removes the
    folders that no live process holds, leaves them; its own stop removes only its own.
    """

    def __init__(
        self,
        *,
        store: ModelRecordServiceBase,
        events: EventServiceBase,
        models_path: Path,
        install_roots: Sequence[Path] = (),
        downloads: DownloadSettings = DownloadSettings(),
    ) -> None:
        self._store = store
        self._events = events
        self._models_path = models_path
        self._roots = [root.resolve() for root in (models_path, *install_roots)]
        self._downloads = downloads
        self._url_downloader = FileDownloader(download_client(downloads.allow_private))
        self._hf_downloader = FileDownloader(hub_client())
        self._lock = threading.Lock()
        self._runs: dict[int, _Run] = {}
        self._next_id = 1
        self._stopping = False
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="model-install")

    @property
    def _downloads_path(self) -> Path:
        return self._models_path / DOWNLOADS_FOLDER

    def start(self) -> None:
        remove_unheld_folders(self._downloads_path)
        missing = self.list_missing()
        if missing:
            names = ", ".join(f"'{config.name}' ({config.path})" for config in missing)
            logger.warning("%d installed model(s) have lost their files: %s", len(missing), names)
        try:
            orphaned = self.list_orphaned()
        except ScanTooLargeError as error:
            logger.warning("The models folder was not searched for models not installed: %s", error)
            return
        if orphaned:
            paths = ", ".join(model.path for model in orphaned)
            logger.warning("%d model(s) in %s are not installed: %s", len(orphaned), self._models_path, paths)

    def stop(self, timeout_s: float | None = None) -> None:
        with self._lock:
            self._stopping = True
            for run in self._runs.values():
                if run.job.status in (InstallStatus.WAITING, InstallStatus.PAUSED) and self._unschedule(run):
                    self._finish_stopped(run, _Stop.CANCEL)
                elif run.job.status not in TERMINAL_STATUSES:
                    run.stop = _Stop.CANCEL
            futures = [run.future for run in self._runs.values() if run.future is not None]
        self._executor.shutdown(wait=False, cancel_futures=True)
        concurrent.futures.wait(futures, timeout=timeout_s)
        self._url_downloader.close()
        self._hf_downloader.close()
        with self._lock:
            # Only this service's own: another service on the same models folder may be downloading beside it.
            for run in self._runs.values():
                self._remove_folder(run)

    def heuristic_import(
        self,
        source: str,
        config: ModelRecordChanges | None = None,
        access_token: str | None = None,
        inplace: bool = True,
    ) -> ModelInstallJob:
        parsed = parse_source(source, inplace)
        local_path = str(self._existing(parsed.path)) if isinstance(parsed, LocalModelSource) else ""
        with self._lock:
            self._check_running()
            for run in self._runs.values():
                if str(run.job.source) == str(parsed) and run.job.status not in TERMINAL_STATUSES:
                    return run.job.model_copy(deep=True)
            job = ModelInstallJob(
                id=self._next_id,
                source=parsed,
                inplace=isinstance(parsed, LocalModelSource) and parsed.inplace,
                config_in=config or ModelRecordChanges(),
                local_path=local_path,
            )
            self._next_id += 1
            run = _Run(job=job, access_token=access_token)
            self._runs[job.id] = run
            self._submit(run)
            logger.info("Install job %d: %s", job.id, parsed)
            return job.model_copy(deep=True)

    def _check_running(self) -> None:
        """Raises once `stop` has begun, as no job runs after it; called with the lock held."""
        if self._stopping:
            raise InstallJobStateError("The server is stopping: it starts no install job")

    def _submit(self, run: _Run) -> None:
        run.stop = None
        run.future = self._executor.submit(self._run_job, run)

    def list_jobs(self) -> list[ModelInstallJob]:
        with self._lock:
            return [run.job.model_copy(deep=True) for run in self._runs.values()]

    def get_job_by_id(self, job_id: int) -> ModelInstallJob:
        with self._lock:
            return self._run_of(job_id).job.model_copy(deep=True)

    def _run_of(self, job_id: int) -> _Run:
        run = self._runs.get(job_id)
        if run is None:
            raise UnknownInstallJobError(job_id)
        return run

    def cancel_job(self, job_id: int) -> ModelInstallJob:
        with self._lock:
            run = self._run_of(job_id)
            status = run.job.status
            if status in (InstallStatus.WAITING, InstallStatus.PAUSED) and self._unschedule(run):
                self._finish_stopped(run, _Stop.CANCEL)
            elif status in (InstallStatus.WAITING, InstallStatus.DOWNLOADING):
                run.stop = _Stop.CANCEL
            elif status is not InstallStatus.CANCELLED:
                raise InstallJobStateError(
                    f"Install job {job_id} is {status.value}: "
                    "only a waiting, downloading or paused job can be cancelled"
                )
            return run.job.model_copy(deep=True)

    def _unschedule(self, run: _Run) -> bool:
        """Whether the job is off the workers: paused, or waiting and taken out of line before a worker took it."""
        return run.job.status is InstallStatus.PAUSED or (run.future is not None and run.future.cancel())

    def pause_job(self, job_id: int) -> ModelInstallJob:
        with self._lock:
            run = self._run_of(job_id)
            status = run.job.status
            if isinstance(run.job.source, LocalModelSource) or status not in (
                InstallStatus.WAITING,
                InstallStatus.DOWNLOADING,
            ):
                raise InstallJobStateError(
                    f"Install job {job_id} is {status.value}: only a URL or repo job that is waiting or downloading "
                    "can be paused"
                )
            if status is InstallStatus.WAITING and self._unschedule(run):
                run.job.status = InstallStatus.PAUSED
            else:
                run.stop = _Stop.PAUSE
            return run.job.model_copy(deep=True)

    def resume_job(self, job_id: int) -> ModelInstallJob:
        with self._lock:
            run = self._to_run_again(job_id, InstallStatus.PAUSED, "only a paused job can be resumed")
            run.job.status = InstallStatus.WAITING
            self._submit(run)
            return run.job.model_copy(deep=True)

    def restart_failed(self, job_id: int) -> ModelInstallJob:
        with self._lock:
            run = self._to_run_again(job_id, InstallStatus.ERROR, "only a failed job can be restarted")
            run.job = run.job.model_copy(
                update={
                    "error": None,
                    "error_reason": None,
                    "error_traceback": None,
                    "bytes": 0,
                    "total_bytes": 0,
                    "download_parts": [],
                }
            )
            run.job.status = InstallStatus.WAITING
            self._submit(run)
            return run.job.model_copy(deep=True)

    def _to_run_again(self, job_id: int, status: InstallStatus, rule: str) -> _Run:
        """The job, if it is in `status` and the service is not stopping; else `InstallJobStateError` with `rule`."""
        run = self._run_of(job_id)
        if run.job.status is not status:
            raise InstallJobStateError(f"Install job {job_id} is {run.job.status.value}: {rule}")
        self._check_running()
        return run

    def prune_jobs(self) -> None:
        with self._lock:
            self._runs = {job_id: run for job_id, run in self._runs.items() if run.job.status not in TERMINAL_STATUSES}

    def _run_job(self, run: _Run) -> None:
        """A worker's whole handling of one job: every failure ends the job, never the worker."""
        job = run.job
        try:
            if isinstance(job.source, LocalModelSource):
                self._start_install(run)
                config = self._install(
                    Path(job.local_path),
                    job.config_in,
                    str(job.source),
                    _Placement.IN_PLACE if job.inplace else _Placement.COPY,
                )
            else:
                downloaded = self._download(run)
                self._start_install(run)
                config = self._install(downloaded, job.config_in, str(job.source), _Placement.MOVE)
        except _Stopped as stopped:
            with self._lock:
                self._finish_stopped(run, stopped.how)
            return
        except Exception as error:
            if not isinstance(error, NodeloomError):
                logger.exception("Install job %d failed", job.id)
            with self._lock:
                self._remove_folder(run)
                job.error_reason = type(error).__name__
                job.error = str(error)
                job.error_traceback = "".join(traceback.format_exception(error))
                run.job.status = InstallStatus.ERROR
                event = ModelInstallErrorEvent(
                    id=job.id, source=job.source, error_type=job.error_reason, error=job.error
                )
            logger.warning("Install job %d (%s) failed: %s", job.id, job.source, job.error)
            self._events.dispatch(event)
            return
        with self._lock:
            self._remove_folder(run)
            job.config_out = config
            job.total_bytes = job.total_bytes or config.file_size or 0
            job.bytes = job.total_bytes
            run.job.status = InstallStatus.COMPLETED
            complete = ModelInstallCompleteEvent(
                id=job.id, source=job.source, key=config.key, total_bytes=job.total_bytes, config=config
            )
        self._events.dispatch(complete)

    def _start_install(self, run: _Run) -> None:
        with self._lock:
            self._check_stop(run)
            run.job.status = InstallStatus.RUNNING
            event = ModelInstallStartedEvent(id=run.job.id, source=run.job.source)
        self._events.dispatch(event)

    def _check_stop(self, run: _Run) -> None:
        """Raises `_Stopped` when the job was asked to stop; called with the lock held."""
        if run.stop is not None:
            raise _Stopped(run.stop)

    def _finish_stopped(self, run: _Run, how: _Stop) -> None:
        """Ends a job that stopped: cancelled, its folder goes; paused, it stays. Called with the lock held."""
        job = run.job
        if how is _Stop.PAUSE:
            for part in job.download_parts:
                if part.status is DownloadJobStatus.RUNNING:
                    part.status = DownloadJobStatus.PAUSED
            run.job.status = InstallStatus.PAUSED
            return
        self._remove_folder(run)
        for part in job.download_parts:
            if part.status is not DownloadJobStatus.COMPLETED:
                part.status = DownloadJobStatus.CANCELLED
        run.job.status = InstallStatus.CANCELLED
        self._events.dispatch(ModelInstallCancelledEvent(id=job.id, source=job.source))

    def _remove_folder(self, run: _Run) -> None:
        if run.folder is not None:
            folder, hold = run.folder
            shutil.rmtree(folder, ignore_errors=True)
            hold.release()
            run.folder = None

    def _download(self, run: _Run) -> Path:
        """Downloads the job's files into its folder; the downloaded file or folder."""
        job = run.job
        with self._lock:
            self._check_stop(run)
            run.job.status = InstallStatus.DOWNLOADING
        name, files, downloader, headers = self._remote_files(run)
        with self._lock:
            self._check_stop(run)
            if run.folder is None:
                run.folder = new_held_folder(self._downloads_path, prefix=f"job-{job.id}-")
            folder = run.folder[0] / _FILES_FOLDER
            job.local_path = str(folder / name)
            known = {part.source: part for part in job.download_parts}
            job.download_parts = [
                known.get(file.url)
                or DownloadPart(id=index, source=file.url, dest=str(folder / file.path), total_bytes=file.size or 0)
                for index, file in enumerate(files)
            ]
            self._count_bytes(job)
            started = ModelInstallDownloadStartedEvent.build(job)
        self._events.dispatch(started)
        for file, part in zip(files, job.download_parts, strict=True):
            if part.status is DownloadJobStatus.COMPLETED:
                continue
            self._download_part(run, downloader, file, part, headers)
        with self._lock:
            self._check_stop(run)
            run.job.status = InstallStatus.DOWNLOADS_DONE
            done = ModelInstallDownloadsCompleteEvent(id=job.id, source=job.source)
        self._events.dispatch(done)
        return folder / name

    def _download_part(
        self, run: _Run, downloader: FileDownloader, file: RemoteFile, part: DownloadPart, headers: dict[str, str]
    ) -> None:
        def progress(done: int, total: int) -> None:
            with self._lock:
                part.bytes, part.total_bytes = done, total or part.total_bytes
                self._count_bytes(run.job)
                now = time.monotonic()
                if now - run.last_progress < _PROGRESS_INTERVAL_S:
                    return
                run.last_progress = now
                event = ModelInstallDownloadProgressEvent.build(run.job)
            self._events.dispatch(event)

        def check_stop() -> None:
            with self._lock:
                self._check_stop(run)

        with self._lock:
            part.status = DownloadJobStatus.RUNNING
        try:
            size = downloader.fetch(file, Path(part.dest), headers, check_stop, progress)
        except NodeloomError as error:
            with self._lock:
                part.status, part.error_type, part.error = DownloadJobStatus.ERROR, type(error).__name__, str(error)
            raise
        with self._lock:
            part.status, part.bytes, part.total_bytes, part.download_path = (
                DownloadJobStatus.COMPLETED,
                size,
                size,
                part.dest,
            )
            self._count_bytes(run.job)

    def _remote_files(self, run: _Run) -> tuple[str, list[RemoteFile], FileDownloader, dict[str, str]]:
        """The name the model is downloaded under, its files, the downloader to use and the headers to send."""
        source = run.job.source
        if isinstance(source, HFModelSource):
            # Imported here: only repo installs load the hub's client.
            from huggingface_hub import constants, get_token

            # huggingface_hub reads HF_ENDPOINT once, when imported; read now, it applies without a restart.
            endpoint = os.environ.get("HF_ENDPOINT", "").rstrip("/") or constants.ENDPOINT
            token = run.access_token or self._downloads.hf_token or get_token()
            name, files = repo_files(source, endpoint, token)
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return name, files, self._hf_downloader, headers
        assert isinstance(source, URLModelSource)
        name = file_name(source.url)
        headers = {"Authorization": f"Bearer {run.access_token}"} if run.access_token else {}
        return name, [RemoteFile(url=source.url, path=PurePosixPath(name))], self._url_downloader, headers

    @staticmethod
    def _count_bytes(job: ModelInstallJob) -> None:
        job.bytes = sum(part.bytes for part in job.download_parts)
        job.total_bytes = sum(part.total_bytes for part in job.download_parts)

    def _allowed(self, path: Path | str) -> Path:
        """`path` absolute with its symlinks resolved; `ModelPathNotAllowedError` when that is outside the roots."""
        if "\0" in str(path):
            raise ModelPathNotFoundError(f"{str(path)!r} holds a NUL character, so it names no file")
        try:
            resolved = Path(path).expanduser().resolve()
        except (OSError, RuntimeError) as error:
            # RuntimeError: a symlink loop. Where it leads cannot be told, so it is not known to be inside.
            raise ModelPathNotAllowedError() from error
        if not any(resolved.is_relative_to(root) for root in self._roots):
            raise ModelPathNotAllowedError()
        return resolved

    def _existing(self, path: Path | str) -> Path:
        """`path` made absolute inside the roots; `ModelPathNotFoundError` when nothing can be found there."""
        resolved = self._allowed(path)
        try:
            if resolved.exists():
                return resolved
        except OSError as error:
            raise ModelPathNotFoundError(f"Cannot look at {resolved}: {error.strerror}") from error
        raise ModelPathNotFoundError(f"Nothing exists at {resolved}")

    def install_path(
        self, path: Path | str, config_overrides: ModelRecordChanges | None = None, inplace: bool = True
    ) -> AnyModelConfig:
        source = self._existing(path)
        return self._install(source, config_overrides, str(source), _Placement.IN_PLACE if inplace else _Placement.COPY)

    def _install(
        self, source: Path, config_overrides: ModelRecordChanges | None, source_text: str, placement: _Placement
    ) -> AnyModelConfig:
        """Probes the model at `source` and records it, where it is or copied or moved into the models folder; the
        record's `source` is `source_text`."""
        try:
            probed = probe_model(source)
        except OSError as error:
            raise InvalidModelError(f"Cannot read {error.filename or source}: {error.strerror or error}") from error
        fields: dict[str, Any] = {
            "type": probed.type,
            "format": probed.format,
            "base": probed.base,
            "name": source.stem if source.is_file() else source.name,
            **probed.extra_fields,
        }
        if config_overrides is not None:
            fields |= config_overrides.model_dump(exclude_none=True)
        if "config_path" in fields:
            # The configs are read when the model loads: from the same roots as models, for the same reason.
            fields["config_path"] = str(self._existing(fields["config_path"]))
        if fields["base"] is None:
            raise ModelBaseUnknownError(
                f"Cannot tell the base of the {probed.type.value} model at {source}: {probed.unknown_base_reason}. "
                f"Install it again with a base override ({', '.join(base.value for base in BaseModelType)})"
            )
        for name, reason in probed.undecided.items():
            if fields.get(name) is None:
                raise ModelSettingUnknownError(
                    f"Cannot tell the {name} of the {probed.type.value} model at {source}: {reason}. "
                    f"Install it again with a {name} override"
                )
        if placement is _Placement.IN_PLACE:
            return self._record(source_text, source, str(source), fields)
        destination = self._models_path / str(fields["base"]) / str(fields["type"]) / source.name
        if destination.exists():
            raise DuplicateModelError(f"{destination} exists already: remove the model installed there first")
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            if placement is _Placement.MOVE:
                source.rename(destination)
            else:
                copy_model(source, destination, self._roots)
            return self._record(source_text, destination, destination.relative_to(self._models_path).as_posix(), fields)
        except BaseException:
            _remove(destination)
            raise

    def _record(self, source: str, files: Path, stored_path: str, fields: dict[str, Any]) -> AnyModelConfig:
        """Records the model whose `files` are stored at `stored_path`, after checking it is not installed yet."""
        # Checked before hashing, which takes minutes for a large model; the insert checks again.
        existing = self._store.search_by_path(stored_path)
        if existing:
            raise DuplicateModelError(
                f"{stored_path} is installed already, as '{existing[0].name}' (key {existing[0].key}): "
                "remove that model first to install it again"
            )
        recorded = {"path": stored_path, "source": source, "hash": hash_model(files), "file_size": size_on_disk(files)}
        config = validate_model_config(fields | recorded)
        installed = self._store.add_model(config)
        logger.info("Installed the %s %s model '%s' from %s", installed.base, installed.type, installed.name, source)
        return installed

    def scan_folder(self, path: Path | str) -> list[FoundModel]:
        folder = self._existing(path)
        if not folder.is_dir():
            raise ModelPathNotFoundError(f"{folder} is not a folder")
        installed = self._installed_paths()
        return [
            FoundModel(path=str(found), is_installed=found in installed) for found in find_models(self._allowed, folder)
        ]

    def list_missing(self) -> list[AnyModelConfig]:
        return [config for config in self._store.search_by_attr() if not (self._models_path / config.path).exists()]

    def list_orphaned(self) -> list[OrphanedModelInfo]:
        if not self._models_path.is_dir():
            return []
        models_path = self._models_path.resolve()
        installed = self._installed_paths()
        return [
            describe_orphan(models_path, found)
            for found in find_models(self._allowed, models_path)
            if found not in installed
        ]

    def _installed_paths(self) -> set[Path]:
        """Where the installed models are, symlinks resolved."""
        return {(self._models_path / config.path).resolve() for config in self._store.search_by_attr()}

    def update(self, key: str, changes: ModelRecordChanges) -> AnyModelConfig:
        if changes.config_path is not None:
            changes = changes.model_copy(update={"config_path": str(self._existing(changes.config_path))})
        return self._store.update_model(key, changes)

    def delete(self, key: str) -> None:
        config = self._store.get_model(key)
        self._store.del_model(key)
        if not Path(config.path).is_absolute():
            _remove(self._models_path / config.path)
        logger.info("Deleted the model '%s' (%s)", config.name, key)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
