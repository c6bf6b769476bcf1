"""The plugin database on SQLite and on a real PostgreSQL server (the scale-out setup).

PostgreSQL is started by the test itself (initdb into a temp dir, TCP on 127.0.0.1, trust
auth), as the `postgres` system user because initdb refuses to run as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from mautrix.util.async_db import Database

from rtcbot.calls.store import OwnCallStore
from rtcbot.db import DB
from rtcbot.migrations import upgrade_table
from rtcbot_stack.stack import free_port


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    return None


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries missing: .ci/run should install postgresql")
        pytest.skip("PostgreSQL server binaries not installed")
    data = Path(tempfile.mkdtemp(prefix="rtcbot-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        pg = pwd.getpwnam("postgres")
        os.chown(data, pg.pw_uid, pg.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run(
        [*run_as, initdb, "-D", str(data / "db"), "--auth=trust", "-U", "rtcbot"],
        check=True,
        capture_output=True,
    )
    opts = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    subprocess.run(
        [
            *run_as,
            pg_ctl,
            "-D",
            str(data / "db"),
            "-o",
            opts,
            "-l",
            str(data / "pg.log"),
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgres://rtcbot@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*run_as, pg_ctl, "-D", str(data / "db"), "-m", "fast", "stop"], capture_output=True
        )
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DB]:
    if request.param == "sqlite":
        url = f"sqlite:{tmp_path / 'plugin.db'}"
    else:
        # A fresh database per test, so every migration runs from scratch each time.
        server = request.getfixturevalue("postgres_url")
        name = f"t{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(server)
        await conn.execute(f"CREATE DATABASE {name}")
        await conn.close()
        url = server.rsplit("/", 1)[0] + f"/{name}"
    database = Database.create(url, upgrade_table=upgrade_table)
    await database.start()
    try:
        yield DB(database)
    finally:
        await database.stop()


async def test_commands_are_claimed_exactly_once(db: DB) -> None:
    assert await db.claim_command("$a", "!r") is True
    assert await db.claim_command("$a", "!r") is False
    assert await db.claim_command("$b", "!r") is True
    await db.prune_commands(int(time.time() * 1000) + 1000)
    assert await db.claim_command("$a", "!r") is True  # pruned, so claimable again


async def test_room_settings_upsert(db: DB) -> None:
    assert await db.get_notify_level("!r") is None
    await db.set_notify_level("!r", "summary")
    await db.set_notify_level("!r", "off")
    await db.set_auto_role("!r", "record")
    assert await db.get_notify_level("!r") == "off"
    assert await db.get_auto_role("!r") == "record"


async def test_own_calls_and_state(db: DB) -> None:
    own = OwnCallStore(db.db)
    await own.add_own_call("!r", "audio")
    await own.add_own_call("!r", "video")
    calls = await own.own_calls()
    assert [(c.room_id, c.intent) for c in calls] == [("!r", "video")]
    await own.remove_own_call("!r")
    assert await own.own_calls() == []
    await db.set_state("k", "1")
    await db.set_state("k", "2")
    assert await db.get_state("k") == "2"
