"""Session-scoped PostgreSQL and S3 servers, moto for RDS, and a test database with known rows."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from tests.backups.servers import Postgres, S3Server, postgres_server, seaweed


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    # Not under pytest's tmp_path: that is private to root, and the server runs as the postgres user.
    base = Path(tempfile.mkdtemp(prefix="chatops-pg-"))
    try:
        with postgres_server(base) as server:
            if isinstance(server, str):
                pytest.skip(server)
            yield server
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with seaweed(tmp_path_factory.mktemp("weed")) as server:
        if isinstance(server, str):
            pytest.skip(server)
        yield server


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{server._server.server_port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    """A new bucket for one test."""
    name = f"t-{secrets.token_hex(6)}"
    client = s3_server.client()
    client.create_bucket(Bucket=name)
    client.close()
    return name


@pytest.fixture
def appdb(postgres: Postgres) -> Iterator[str]:
    """A database `app_<random>` with two tables of known rows; its name."""
    name = f"app_{secrets.token_hex(4)}"
    postgres.psql(f"CREATE DATABASE {name}")
    postgres.psql(
        "CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL);"
        "INSERT INTO users SELECT g, 'user' || g || '@example.com' FROM generate_series(1, 500) g;"
        "CREATE TABLE orders (id int PRIMARY KEY, user_id int REFERENCES users, total numeric);"
        "INSERT INTO orders SELECT g, 1 + g % 500, g * 1.5 FROM generate_series(1, 2000) g;",
        database=name,
    )
    yield name
    postgres.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
