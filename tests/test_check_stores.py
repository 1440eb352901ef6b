"""`speedrun check` opens the run store and reaches the rate budget, against real PostgreSQL and Redis servers."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.fake_llm import FakeLLM
from tests.helpers import fake_env, run_cli


def _sql(url: str, *queries: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for query in queries:
            conn.execute(query)


def _as(url: str, user: str, password: str, database: str) -> str:
    """The URL of the same server with another user, password and database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}", path=f"/{database}"))


def _line(stdout: str, label: str) -> str:
    [line] = [line for line in stdout.splitlines() if line.split()[:1] == [label]]
    return line


@pytest.fixture
def database_url(postgres_url: str) -> Iterator[str]:
    """A fresh database on the session's server, so the check sets up its tables from nothing."""
    name = f"t_{secrets.token_hex(6)}"
    _sql(postgres_url, f"CREATE DATABASE {name}")
    yield _as(postgres_url, "speedrun", urlsplit(postgres_url).password or "", name)
    _sql(postgres_url, f"DROP DATABASE {name} WITH (FORCE)")


def test_a_wrong_database_password_fails_the_check_naming_the_masked_url(
    tmp_path: Path, fake_llm: FakeLLM, postgres_url: str
) -> None:
    password = urlsplit(postgres_url).password or ""
    url = postgres_url.replace(f":{password}@", f":{password}WRONG@")

    proc = run_cli(["check"], tmp_path, **fake_env(fake_llm), SPEEDRUN_DATABASE_URL=url)

    assert proc.returncode == 2, proc.stdout + proc.stderr
    masked = urlunsplit(urlsplit(url)._replace(netloc=f"speedrun:***@{urlsplit(url).hostname}:{urlsplit(url).port}"))
    assert _line(proc.stdout, "runs").split() == ["runs", "PostgreSQL", "at", f"'{masked}':", "error"]
    assert "status    error" in proc.stdout and "status    ok" not in proc.stdout
    assert "password authentication failed" in proc.stderr and masked in proc.stderr
    assert "Traceback" not in proc.stderr
    assert password[:4] not in proc.stdout + proc.stderr  # neither the password nor the start of the wrong one


def test_good_postgres_and_redis_both_say_ok(
    tmp_path: Path, fake_llm: FakeLLM, database_url: str, redis_url: str
) -> None:
    budget_url = redis_url.rsplit("/", 1)[0] + "/1"

    proc = run_cli(["check"], tmp_path, **fake_env(fake_llm), SPEEDRUN_DATABASE_URL=database_url,
                   SPEEDRUN_REDIS_URL=budget_url)  # fmt: skip

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _line(proc.stdout, "runs").endswith(f"/{urlsplit(database_url).path.lstrip('/')}': ok")
    assert _line(proc.stdout, "runs").startswith("runs      PostgreSQL at 'postgresql://speedrun:***@")
    assert (
        _line(proc.stdout, "budget")
        == f"budget    Redis at {budget_url.replace(urlsplit(budget_url).password or '', '***')}: ok"
    )
    assert "status    ok" in proc.stdout
    for secret in (urlsplit(database_url).password, urlsplit(redis_url).password):
        assert secret and secret not in proc.stdout + proc.stderr
    _sql(database_url, "SELECT 1 FROM speedrun_migrations")  # the check really opened (and set up) the store


def test_a_wrong_redis_password_fails_the_check(tmp_path: Path, fake_llm: FakeLLM, redis_url: str) -> None:
    password = urlsplit(redis_url).password or ""
    url = redis_url.replace(f":{password}@", ":not-the-password@")

    proc = run_cli(["check"], tmp_path, **fake_env(fake_llm), SPEEDRUN_REDIS_URL=url)

    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert _line(proc.stdout, "budget") == f"budget    Redis at {url.replace('not-the-password', '***')}: error"
    assert _line(proc.stdout, "runs").endswith(": ok")  # the SQLite store under SPEEDRUN_HOME still opens
    assert "refused the password" in proc.stderr and "status    error" in proc.stdout
    assert "not-the-password" not in proc.stdout + proc.stderr and password not in proc.stdout + proc.stderr


def test_a_user_without_create_on_public_is_told_how_to_grant_it(
    tmp_path: Path, fake_llm: FakeLLM, postgres_url: str, database_url: str
) -> None:
    # What PostgreSQL 15+ gives a role using a database that `postgres` created: no CREATE in schema public.
    role, password = f"r_{secrets.token_hex(4)}", secrets.token_hex(8)
    name = urlsplit(database_url).path.lstrip("/")
    _sql(postgres_url, f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    _sql(database_url, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")  # as on 15+, whatever the server's version
    url = _as(postgres_url, role, password, name)

    refused = run_cli(["check"], tmp_path, **fake_env(fake_llm), SPEEDRUN_DATABASE_URL=url)

    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "permission denied for schema public" in refused.stderr
    assert f"`createdb -O {role}` or `GRANT CREATE ON SCHEMA public TO {role}`" in refused.stderr
    assert "password in the URL are right" not in refused.stderr  # not the generic advice: the login worked
    assert password not in refused.stdout + refused.stderr

    _sql(database_url, f"GRANT CREATE ON SCHEMA public TO {role}")  # the fix the error names
    fixed = run_cli(["check"], tmp_path, **fake_env(fake_llm), SPEEDRUN_DATABASE_URL=url)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert _line(fixed.stdout, "runs").endswith(": ok")
