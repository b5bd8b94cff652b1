"""nodeloom's settings: defaults, then `ROOT/nodeloom.yaml`, then `NODELOOM_*` variables, then explicit values."""

from __future__ import annotations

import os
import threading
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, StringConstraints, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from nodeloom.backend.util.devices import DEVICE_PATTERN, DeviceName

CONFIG_FILE_NAME = "nodeloom.yaml"
DEFAULT_ROOT = Path(".nodeloom")

_config_file: ContextVar[Path | None] = ContextVar("nodeloom_config_file", default=None)


class NodeloomConfig(BaseSettings):
    """Every setting. Paths that are relative are relative to `root`."""

    model_config = SettingsConfigDict(env_prefix="NODELOOM_", extra="forbid")

    root: Path = Field(default=DEFAULT_ROOT, description="The folder holding the database, outputs, models and nodes")
    host: str = Field(default="127.0.0.1", description="The address the server binds")
    port: int = Field(default=9090, ge=0, le=65535, description="The port the server listens on")
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="The log level")

    db_file: Path = Field(default=Path("databases/nodeloom.db"), description="The SQLite database file")
    outputs_dir: Path = Field(default=Path("outputs"), description="Where images are written")
    models_dir: Path = Field(default=Path("models"), description="Where models are kept")
    nodes_dir: Path = Field(default=Path("nodes"), description="Custom node packs, imported at start-up")

    max_queue_size: int = Field(default=10_000, ge=1, description="The most items a queue holds")
    max_upload_mb: int = Field(default=50, ge=1, description="The largest image upload accepted, in MB")
    requeue_interrupted: bool = Field(
        default=False, description="Put items that were running when the process died back in the queue"
    )
    max_attempts: int = Field(default=3, ge=1, description="How many interruptions an item survives")
    save_state_after_s: float = Field(
        default=1.0, ge=0, description="Save a session's state after each node that ran at least this long"
    )
    run_processor: bool = Field(
        default=True,
        description="Run session processors for the server; off (serve --no-processor), the server only serves the "
        "API and `nodeloom worker` processes run the sessions",
    )
    worker_processes: bool = Field(
        default=True,
        description="Run the server's processors in child worker processes, one per device, so that no node code "
        "runs in the API process; off, they run in the API process",
    )
    hard_cancel_after_s: float = Field(
        default=10.0,
        gt=0,
        description="How long a worker process's node may ignore the cancel of its item, or its timeout, before "
        "the server ends that process and starts a fresh one",
    )
    processor_poll_interval_s: float = Field(
        default=1.0, gt=0, description="How often the processor looks for work when no event woke it"
    )

    node_cache_size: int = Field(default=512, ge=0, description="How many node outputs the invocation cache keeps")
    ram_cache_gb: float = Field(default=4.0, ge=0, description="The RAM the loaded models may take, in GiB")
    vram_cache_gb: float = Field(
        default=8.0, ge=0, description="The VRAM the models on the GPU may take, in GiB; those in use stay regardless"
    )
    device: Annotated[DeviceName, StringConstraints(pattern=DEVICE_PATTERN)] = Field(
        default="auto",
        description="Where models run: auto picks CUDA, else MPS, else the CPU; cuda:N is the GPU of index N",
    )
    devices: list[Annotated[DeviceName, StringConstraints(pattern=DEVICE_PATTERN)]] = Field(
        default_factory=list,
        description="The devices to run processors on, one each with its own model cache and VRAM budget (serve "
        "starts a worker process for each); empty is the one device",
    )
    precision: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        default="auto", description="The dtype models load in: auto is float16 on CUDA, float32 elsewhere"
    )
    stats_dir: Path | None = Field(default=None, description="Write each session's stats JSON here")
    profile_graphs: bool = Field(default=False, description="Profile each session with cProfile")
    profiles_dir: Path = Field(default=Path("profiles"), description="Where session profiles are written")
    profile_prefix: str = Field(default="", description="Prepended to each profile's file name")

    # Robustness: the processor's supervisor, time budgets for node code, a bounded shutdown
    processor_restart_interval_s: float = Field(
        default=1.0, ge=0, description="How long the processor stays down after its thread died, before it restarts"
    )
    regex_timeout_s: float = Field(
        default=1.0, gt=0, description="The most seconds a string node's regular expression may run before it fails"
    )
    shutdown_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="The most seconds the server takes to stop on Ctrl-C or SIGTERM; a node that has not stopped "
        "by then is left running and its item to start-up recovery",
    )

    # Queue history and webhooks
    max_queue_history: int | None = Field(
        default=10_000,
        ge=0,
        description="The most finished items a queue keeps; older ones are deleted as others finish (None: all)",
    )
    max_queue_history_days: float | None = Field(
        default=None, gt=0, description="Delete finished items older than this many days (None: no age limit)"
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="Let webhooks reach loopback, private, link-local and other non-public addresses",
    )
    webhook_senders: int = Field(default=4, ge=1, description="How many webhook calls may be under way at once")
    webhook_timeout_s: float = Field(
        default=10.0, gt=0, description="The most seconds one webhook call may take, connecting included"
    )
    webhook_tries: int = Field(default=3, ge=1, description="How many times a webhook call is tried before giving up")
    webhook_sweep_interval_s: float = Field(
        default=30.0,
        gt=0,
        description="How often the webhook calls still due are read from the queue, to make those no event announced",
    )
    webhook_secret: SecretStr | None = Field(
        default=None, description="Signs each webhook call (HMAC SHA-256 in X-Nodeloom-Signature) when set"
    )

    # Limits: the most work one request may ask for; a request over one is refused naming the setting.
    max_request_mb: int = Field(
        default=16, ge=1, description="The largest API request body accepted, in MB (uploads: max_upload_mb)"
    )
    max_graph_nodes: int = Field(default=1_000, ge=1, description="The most nodes a graph may hold")
    max_session_nodes: int = Field(
        default=100_000,
        ge=1,
        description="The most nodes a session may prepare: its graph's nodes, each once per iteration it sits in",
    )
    max_string_length: int = Field(default=100_000, ge=1, description="The most characters a node's text input holds")
    max_collection_size: int = Field(
        default=10_000, ge=1, description="The most items a node's collection input holds or a node may make"
    )
    max_image_pixels: int = Field(
        default=8192 * 8192,
        ge=1,
        description="The most pixels an uploaded image or an image, noise or latents a node makes may have",
    )
    max_batch_items: int = Field(default=10_000, ge=1, description="The most data items a batch holds, in all")
    max_batch_runs: int = Field(default=10_000, ge=1, description="The most runs a batch may ask for")
    max_workflow_kb: int = Field(default=2_048, ge=1, description="The largest workflow a batch may carry, in KB")
    max_batch_timeout_s: float = Field(
        default=30 * 24 * 3600,
        gt=0,
        le=threading.TIMEOUT_MAX,
        description="The longest timeout a batch may give its sessions, in seconds",
    )
    socket_replay_mb: int = Field(
        default=32, ge=1, description="The most event data kept, over all queues, to replay to reconnecting clients"
    )

    # Safety at the edge: who may reach the server, and what model installs may read
    auth_tokens: list[SecretStr] = Field(
        default=[],
        description="Tokens accepted as `Authorization: Bearer <token>`. With these or any made with `nodeloom "
        "tokens create`, every route but /health and the API docs, and socket.io, need one",
    )
    allow_origins: list[str] = Field(
        default=[],
        description="Origins (scheme://host:port) of web pages besides the server's own that may use the API and "
        "socket.io; answered with CORS headers",
    )
    allowed_hosts: list[str] = Field(
        default=[],
        description="Host header values answered besides the bound address and localhost, 127.0.0.1 and [::1] on "
        "the server's port: a name without a port matches any port, '*' matches every host",
    )
    model_install_roots: list[Path] = Field(
        default=[], description="Folders besides models_dir that models may be installed from"
    )
    model_download_allow_private: bool = Field(
        default=False,
        description="Let model installs from a URL reach loopback, private, link-local and other non-public "
        "addresses (the Hugging Face hub, HF_ENDPOINT, is reached wherever it is)",
    )
    hf_token: SecretStr | None = Field(
        default=None,
        description="The token sent to the Hugging Face hub for private and gated repos; unset, huggingface_hub's "
        "own (HF_TOKEN, or a token stored by `hf auth login`)",
    )

    # Gallery: bulk downloads
    bulk_download_max_age_s: float = Field(
        default=3600,
        gt=0,
        description="How long a bulk download's zip waits to be fetched, in seconds, before it is removed",
    )
    bulk_download_max_archives: int = Field(
        default=8,
        ge=1,
        description="The most bulk downloads queued, being made or waiting to be fetched at once; more is a 429",
    )
    bulk_download_max_images: int = Field(
        default=10_000, ge=1, description="The most images one bulk download may hold; more is a 422"
    )

    # Database: which engine holds the queue and the records
    database_url: SecretStr = Field(
        default=SecretStr(""),
        description="Empty for the SQLite file db_file in the root; postgresql://user:password@host:port/dbname for "
        "a PostgreSQL database, which several servers may share",
    )
    lease_s: float = Field(
        default=60.0,
        gt=0,
        description="How long a processor may go without a heartbeat before the items it holds are recovered as "
        "interrupted by another (requeued under requeue_interrupted)",
    )
    heartbeat_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="How often each processor renews its lease and sweeps for items whose processor is gone; "
        "less than lease_s",
    )

    events_poll_interval_s: float = Field(
        default=0.05,
        gt=0,
        description="On SQLite, how often each process reads the events other processes stored (PostgreSQL "
        "notifies them)",
    )
    events_keep: int = Field(
        default=10_000,
        ge=1000,
        description="How many of the newest stored events are kept (progress events: a minute at most); a "
        "process that falls further behind misses the older ones",
    )

    @property
    def device_list(self) -> list[DeviceName]:
        """The devices processors run on: `devices`, else the one `device`."""
        return self.devices or [self.device]

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> NodeloomConfig:
        if self.heartbeat_interval_s >= self.lease_s:
            raise ValueError(
                f"heartbeat_interval_s ({self.heartbeat_interval_s:g}) must be less than lease_s ({self.lease_s:g}), "
                "or live processors would lose their items"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file.get()
        if config_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    def resolve(self, path: Path) -> Path:
        """`path` made absolute against the root."""
        return path if path.is_absolute() else (self.root / path).resolve()

    @property
    def db_path(self) -> Path:
        return self.resolve(self.db_file)

    @property
    def outputs_path(self) -> Path:
        return self.resolve(self.outputs_dir)

    @property
    def nodes_path(self) -> Path:
        return self.resolve(self.nodes_dir)

    @property
    def stats_path(self) -> Path | None:
        return None if self.stats_dir is None else self.resolve(self.stats_dir)

    @property
    def profiles_path(self) -> Path:
        return self.resolve(self.profiles_dir)


def load_config(root: Path | str | None = None, **overrides: Any) -> NodeloomConfig:
    """The settings for `root` (else `$NODELOOM_ROOT`, else `./.nodeloom`), with `overrides` taking precedence."""
    root_path = Path(root or os.environ.get("NODELOOM_ROOT") or DEFAULT_ROOT).resolve()
    config_file = root_path / CONFIG_FILE_NAME
    token = _config_file.set(config_file if config_file.is_file() else None)
    try:
        return NodeloomConfig(root=root_path, **overrides)
    finally:
        _config_file.reset(token)
