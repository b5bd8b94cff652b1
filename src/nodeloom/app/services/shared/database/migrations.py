"""The application's schema migrations, applied in order at start-up on SQLite and PostgreSQL.

Each service that stores records adds its numbered migration here: the next free version, with a
short description and an `up` function that runs portable SQL on the cursor (see `DatabaseBase`).
A migration that has shipped is never edited or renumbered; change the schema with a new one.
"""

from __future__ import annotations

from nodeloom.app.services.shared.database.database_common import Migration

MIGRATIONS: list[Migration] = []
