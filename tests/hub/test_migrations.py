"""The Alembic migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

from hub.db import create_schema, make_engine


def test_migrations_match_the_models_and_are_idempotent(database_url: str) -> None:
    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(database_url)
    try:
        create_schema(engine)
        create_schema(engine)  # a second run (hub restart) changes nothing
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
            assert diff == [], f"models and migrations differ: {diff}; add a migration"
            tables = set(inspect(conn).get_table_names())
        assert {"bundle", "delivery", "site", "auditevent", "alembic_version"} <= tables
    finally:
        engine.dispose()
