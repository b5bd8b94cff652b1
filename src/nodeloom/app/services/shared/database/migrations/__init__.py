"""The schema's history: one module per migration, applied in order at start-up by the `Migrator`.

A released migration is frozen: databases out there ran its statements, and a database made by a later nodeloom
must be the same as one they made and then upgraded. Never edit, renumber or remove one; change the schema
with a new module `migration_{n}.py` and its line at the end of `MIGRATIONS`.
"""

from __future__ import annotations

from nodeloom.app.services.shared.database.database_common import Migration
from nodeloom.app.services.shared.database.migrations import (
    migration_1,
    migration_2,
    migration_3,
    migration_4,
    migration_5,
    migration_6,
    migration_7,
    migration_8,
    migration_9,
    migration_10,
)

MIGRATIONS: list[Migration] = [
    Migration(version=1, description="session queue", up=migration_1.up),
    Migration(version=2, description="images and boards", up=migration_2.up),
    Migration(version=3, description="models", up=migration_3.up),
    Migration(version=4, description="each image's board on its row", up=migration_4.up),
    Migration(version=5, description="queue history: workflows per batch, webhook state", up=migration_5.up),
    Migration(version=6, description="API tokens", up=migration_6.up),
    Migration(version=7, description="processor leases", up=migration_7.up),
    Migration(version=8, description="events across processes", up=migration_8.up),
    Migration(version=9, description="webhook claims", up=migration_9.up),
    Migration(version=10, description="a pause every processor sees", up=migration_10.up),
]
"""The schema's history in order; a database records the last version it ran (see `Migrator`)."""
