"""One object holding every service, and the one function that builds the default set for a root folder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nodeloom.app.services.auth_tokens.auth_tokens_base import AuthTokenStoreBase
from nodeloom.app.services.auth_tokens.auth_tokens_sql import SqlAuthTokenStore
from nodeloom.app.services.boards.boards_base import BoardServiceABC
from nodeloom.app.services.bulk_download.bulk_download_base import BulkDownloadBase
from nodeloom.app.services.bulk_download.bulk_download_default import ZipBulkDownloadService
from nodeloom.app.services.config.config_default import NodeloomConfig
from nodeloom.app.services.events.events_base import EventServiceBase
from nodeloom.app.services.events.events_database import DatabaseEventService
from nodeloom.app.services.image_services import build_image_services
from nodeloom.app.services.images.images_base import ImageServiceABC
from nodeloom.app.services.invocation_cache.invocation_cache_base import InvocationCacheBase
from nodeloom.app.services.invocation_cache.invocation_cache_memory import MemoryInvocationCache
from nodeloom.app.services.invocation_stats.invocation_stats_base import InvocationStatsServiceBase
from nodeloom.app.services.invocation_stats.invocation_stats_default import InvocationStatsService
from nodeloom.app.services.metrics.metrics_base import MetricsServiceBase
from nodeloom.app.services.metrics.metrics_collectors import ServiceStateCollector
from nodeloom.app.services.metrics.metrics_prometheus import PrometheusMetricsService
from nodeloom.app.services.model_install.model_install_default import DownloadSettings, ModelInstallService
from nodeloom.app.services.model_load.model_load_base import ModelLoadServiceBase
from nodeloom.app.services.model_load.model_load_default import ModelLoadService
from nodeloom.app.services.model_manager.model_manager_base import ModelManagerServiceBase
from nodeloom.app.services.model_manager.model_manager_default import ModelManagerService
from nodeloom.app.services.model_records.model_records_sql import SqlModelRecordService
from nodeloom.app.services.object_serializer.object_serializer_base import ObjectSerializerBase
from nodeloom.app.services.object_serializer.object_serializer_disk import ObjectSerializerDisk
from nodeloom.app.services.object_serializer.object_serializer_forward_cache import ObjectSerializerForwardCache
from nodeloom.app.services.session_processor.session_processor_base import SessionProcessorBase
from nodeloom.app.services.session_processor.session_processor_common import RunWatcher
from nodeloom.app.services.session_processor.session_processor_default import (
    DefaultSessionProcessor,
    ProcessorSettings,
)
from nodeloom.app.services.session_processor.session_processor_workers import (
    PoolSettings,
    WorkerInvocationCache,
    WorkerModelCache,
    WorkerProcessPool,
)
from nodeloom.app.services.session_queue.session_queue_base import SessionQueueBase
from nodeloom.app.services.session_queue.session_queue_common import BatchLimits
from nodeloom.app.services.session_queue.session_queue_sql import SqlSessionQueue
from nodeloom.app.services.shared.database.database_base import DatabaseBase
from nodeloom.app.services.shared.database.database_common import DatabaseError
from nodeloom.app.services.shared.database.database_sqlite import SqliteDatabase
from nodeloom.app.services.shared.database.migrations import MIGRATIONS
from nodeloom.app.services.shared.database.migrator import Migrator
from nodeloom.app.services.shared.invocation_context import InvocationContextBuilder
from nodeloom.app.services.webhooks.webhooks_base import WebhookServiceBase
from nodeloom.app.services.webhooks.webhooks_default import HttpWebhookService, WebhookSettings
from nodeloom.backend.model_manager.load.model_cache import ModelCache
from nodeloom.backend.model_manager.load.model_loaders import loader_registry
from nodeloom.backend.util.devices import DeviceName


@dataclass(frozen=True)
class InvocationServices:
    config: NodeloomConfig
    database: DatabaseBase
    events: EventServiceBase
    session_queue: SessionQueueBase
    session_processor: SessionProcessorBase
    invocation_stats: InvocationStatsServiceBase
    invocation_cache: InvocationCacheBase
    metrics: MetricsServiceBase
    webhooks: WebhookServiceBase
    images: ImageServiceABC
    boards: BoardServiceABC
    tensors: ObjectSerializerBase[Any]
    conditioning: ObjectSerializerBase[Any]
    model_manager: ModelManagerServiceBase
    auth_tokens: AuthTokenStoreBase
    bulk_download: BulkDownloadBase


def open_database(config: NodeloomConfig) -> DatabaseBase:
    """The database `database_url` names, else the root's SQLite file, created if need be and migrated to the newest
    schema; a wrong URL or an unreachable server is a `DatabaseError` saying so."""
    database = _connect(config)
    try:
        Migrator(database, MIGRATIONS).run()
    except Exception:
        database.close()
        raise
    return database


def _connect(config: NodeloomConfig) -> DatabaseBase:
    url = config.database_url.get_secret_value()
    if not url:
        config.db_path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteDatabase(config.db_path)
    # Imported here so that a root on SQLite never loads the PostgreSQL driver.
    from nodeloom.app.services.shared.database.database_postgres import URL_SCHEMES, PostgresDatabase

    if not url.startswith(URL_SCHEMES):
        # Only the scheme: the rest may hold a password.
        given = f"a {url.split('://')[0]}:// URL" if "://" in url else "no URL"
        raise DatabaseError(
            f"database_url must be empty (the SQLite file in the root) or a postgresql:// URL, but it is {given}"
        )
    return PostgresDatabase(url)


def _model_load(config: NodeloomConfig, events: EventServiceBase, device: DeviceName) -> ModelLoadService:
    """The loading path with a model cache of its own on `device`."""
    return ModelLoadService(
        registry=loader_registry,
        cache=ModelCache(
            ram_budget_gb=config.ram_cache_gb,
            vram_budget_gb=config.vram_cache_gb,
            device=device,
            precision=config.precision,
        ),
        events=events,
        models_path=config.resolve(config.models_dir),
    )


def _processor(
    config: NodeloomConfig,
    queue: SessionQueueBase,
    events: EventServiceBase,
    stats: InvocationStatsServiceBase,
    cache: InvocationCacheBase,
    contexts: InvocationContextBuilder,
    metrics: MetricsServiceBase,
    device: DeviceName,
    watcher: RunWatcher | None,
) -> DefaultSessionProcessor:
    return DefaultSessionProcessor(
        queue,
        events,
        stats,
        cache,
        contexts,
        metrics,
        ProcessorSettings(
            poll_interval_s=config.processor_poll_interval_s,
            save_state_after_s=config.save_state_after_s,
            stats_dir=config.stats_path,
            profiles_dir=config.profiles_path if config.profile_graphs else None,
            profile_prefix=config.profile_prefix,
            restart_interval_s=config.processor_restart_interval_s,
            max_session_nodes=config.max_session_nodes,
            devices=(device,),
            heartbeat_interval_s=config.heartbeat_interval_s,
        ),
        watcher,
    )


def build_processor(
    services: InvocationServices, device: DeviceName, watcher: RunWatcher | None = None
) -> SessionProcessorBase:
    """One more processor on the services' queue, for a worker that runs one per device: a model cache of its own on
    `device` and stats of its own; the rest (queue, events, images, the invocation cache, metrics) shared."""
    config = services.config
    model_manager = ModelManagerService(
        store=services.model_manager.store,
        install=services.model_manager.install,
        load=_model_load(config, services.events, device),
    )
    contexts = InvocationContextBuilder(
        services.events,
        config,
        services.images,
        services.boards,
        services.tensors,
        services.conditioning,
        model_manager,
    )
    stats = InvocationStatsService(model_cache_stats=model_manager.load.get_session_stats)
    return _processor(
        config,
        services.session_queue,
        services.events,
        stats,
        services.invocation_cache,
        contexts,
        services.metrics,
        device,
        watcher,
    )


def build_services(
    config: NodeloomConfig,
    *,
    worker_processes: bool = False,
    watcher: RunWatcher | None = None,
    processors_only: bool = False,
) -> InvocationServices:
    """Opens (and migrates) the database under the root and wires every service; nothing runs until started.

    With `worker_processes` (an API server's), the session processor is a pool of child worker processes, one per
    device, and the invocation and model caches are views of theirs; else one processor runs in this process on
    `config.device`, telling `watcher` of its sessions. A process that runs `processors_only` (a worker) reads back
    from the other processes only the events its processors act on, at most every `events_poll_interval_s`.
    """
    database = open_database(config)
    events = DatabaseEventService(
        database,
        poll_interval_s=config.events_poll_interval_s,
        keep=config.events_keep,
        kinds=DefaultSessionProcessor.EVENTS_READ if processors_only else None,
        min_read_interval_s=config.events_poll_interval_s if processors_only else 0.0,
    )
    image_services = build_image_services(database, config.outputs_path / "images", events)
    images, boards = image_services.images, image_services.boards
    tensors: ObjectSerializerBase[Any] = ObjectSerializerForwardCache(
        ObjectSerializerDisk(config.outputs_path / "tensors", "tensor")
    )
    conditioning: ObjectSerializerBase[Any] = ObjectSerializerForwardCache(
        ObjectSerializerDisk(config.outputs_path / "conditioning", "conditioning")
    )
    queue = SqlSessionQueue(
        database,
        events,
        max_queue_size=config.max_queue_size,
        requeue_interrupted=config.requeue_interrupted,
        max_attempts=config.max_attempts,
        max_history=config.max_queue_history,
        max_history_days=config.max_queue_history_days,
        limits=BatchLimits.from_config(config),
        lease_s=config.lease_s,
    )
    metrics = PrometheusMetricsService()
    cache: InvocationCacheBase
    load: ModelLoadServiceBase
    pool = None
    if worker_processes:
        # Imported here: what a child runs wires its own services with this module.
        from nodeloom.app.services.invoker import run_worker_process

        pool = WorkerProcessPool(
            config,
            queue,
            events,
            metrics,
            run_worker_process,
            PoolSettings(
                devices=tuple(config.device_list),
                hard_cancel_after_s=config.hard_cancel_after_s,
                restart_interval_s=config.processor_restart_interval_s,
            ),
        )
        cache, load = WorkerInvocationCache(pool), WorkerModelCache(pool)
    else:
        cache, load = MemoryInvocationCache(max_size=config.node_cache_size), _model_load(config, events, config.device)
    model_records = SqlModelRecordService(database)
    model_manager = ModelManagerService(
        store=model_records,
        install=ModelInstallService(
            store=model_records,
            events=events,
            models_path=config.resolve(config.models_dir),
            install_roots=[config.resolve(root) for root in config.model_install_roots],
            downloads=DownloadSettings(
                allow_private=config.model_download_allow_private,
                hf_token=None if config.hf_token is None else config.hf_token.get_secret_value(),
            ),
        ),
        load=load,
    )
    stats = InvocationStatsService(model_cache_stats=load.get_session_stats)
    processor: SessionProcessorBase
    if pool is not None:
        processor = pool
    else:
        contexts = InvocationContextBuilder(events, config, images, boards, tensors, conditioning, model_manager)
        processor = _processor(config, queue, events, stats, cache, contexts, metrics, config.device, watcher)
    metrics.add_collector(ServiceStateCollector(queue, cache, processor))
    return InvocationServices(
        config=config,
        database=database,
        events=events,
        session_queue=queue,
        session_processor=processor,
        invocation_stats=stats,
        invocation_cache=cache,
        metrics=metrics,
        webhooks=HttpWebhookService(
            events,
            queue,
            WebhookSettings(
                senders=config.webhook_senders,
                timeout_s=config.webhook_timeout_s,
                tries=config.webhook_tries,
                allow_private=config.webhook_allow_private,
                sweep_interval_s=config.webhook_sweep_interval_s,
                secret=None if config.webhook_secret is None else config.webhook_secret.get_secret_value().encode(),
            ),
        ),
        images=images,
        boards=boards,
        tensors=tensors,
        conditioning=conditioning,
        model_manager=model_manager,
        auth_tokens=SqlAuthTokenStore(database),
        bulk_download=ZipBulkDownloadService(
            config.outputs_path / "bulk_downloads",
            images,
            boards,
            events,
            max_age_s=config.bulk_download_max_age_s,
            max_archives=config.bulk_download_max_archives,
            max_images=config.bulk_download_max_images,
        ),
    )
