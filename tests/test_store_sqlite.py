"""SQLite-specific behaviour: group commit, crash durability, error mapping, store URLs.

The shared contract runs in ``tests/test_store_contract.py``.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from broker.errors import StoreFull, StoreUnavailable
from broker.event import Event
from broker.store.factory import is_shared, needs_polling, open_store
from broker.store.memory import MemoryStore
from broker.store.sqlite import SqliteStore
from tests.store_contract import LOG, event

ROOT = Path(__file__).resolve().parent.parent

# Appends forever from 8 concurrent tasks, printing each event id once its append returned.
CRASH_WRITER = """
import asyncio, sys
from broker.event import Event
from broker.store.sqlite import SqliteStore

async def main():
    store = SqliteStore(path=sys.argv[1])
    await store.open()
    async def task(t):
        n = 0
        while True:
            n += 1
            eid = f"{t}-{n}"
            attrs = {"specversion": "1.0", "id": eid, "source": "/crash", "type": "t"}
            await store.append("default/broker", [Event(attrs, b"x" * 100)])
            print(eid, flush=True)
    await asyncio.gather(*(task(t) for t in range(8)))

asyncio.run(main())
"""


async def test_concurrent_appends_share_commits(tmp_path: Path) -> None:
    store = SqliteStore(path=tmp_path / "weir.db")
    await store.open()
    try:
        before = store.commits
        await asyncio.gather(*(store.append(LOG, [event(i)]) for i in range(200)))
        commits = store.commits - before
        entries = await store.read(LOG, 0, 1000)
        assert sorted(e.event.id for e in entries) == sorted(f"e{i}" for i in range(200))
        assert len({e.seq for e in entries}) == 200
        assert 1 <= commits <= 20, f"200 concurrent appends took {commits} transactions"
    finally:
        await store.close()


async def test_acknowledged_appends_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "weir.db"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASH_WRITER, str(path),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None and child.stderr is not None
    acknowledged: list[str] = []
    killed = False
    try:
        async with asyncio.timeout(30):
            while len(acknowledged) < 300:
                line = await child.stdout.readline()
                assert line, f"writer exited early: {(await child.stderr.read()).decode()}"
                acknowledged.append(line.decode().strip())
        child.send_signal(signal.SIGKILL)
        killed = True
        # Lines printed before the kill were acknowledged too.
        acknowledged += (await child.stdout.read()).decode().split()
    finally:
        # Signal only once: a second kill() polls and could reap the child behind asyncio's back.
        if not killed:
            child.kill()
        await child.wait()
    assert child.returncode == -signal.SIGKILL

    store = SqliteStore(path=path)
    await store.open()
    try:
        stored = {e.event.id for e in await store.read(LOG, 0, 1_000_000)}
        assert set(acknowledged) <= stored
        assert (await store.stats()).events == len(stored)
    finally:
        await store.close()


async def test_disk_full_is_store_full_and_keeps_nothing(tmp_path: Path) -> None:
    store = SqliteStore(path=tmp_path / "weir.db")
    await store.open()
    try:
        await store.append(LOG, [event(1)])
        # Cap the file at its current size: the next page SQLite needs fails with SQLITE_FULL.
        writer = store._writer
        assert writer is not None
        await writer.call(lambda conn: conn.execute("PRAGMA max_page_count = 1"))
        before = await store.stats()
        # Two appends in one transaction: the first fits, the second does not, so both fail.
        failed = await asyncio.gather(store.append(LOG, [event(2)]),
                                      store.append(LOG, [event(3, data=b"x" * 100_000), event(3)]),
                                      return_exceptions=True)
        assert all(isinstance(exc, StoreFull) and exc.retriable for exc in failed), failed
        assert await store.stats() == before
        assert [e.event.id for e in await store.read(LOG, 0, 10)] == ["e1"]
        await writer.call(lambda conn: conn.execute("PRAGMA max_page_count = 1000000"))
        await store.append(LOG, [event(4)])
        # The failed append's seqs are used again: nothing of it was kept, not even its seqs.
        assert [(e.seq, e.event.id) for e in await store.read(LOG, 0, 10)] == [(1, "e1"), (2, "e4")]
    finally:
        await store.close()
    reopened = SqliteStore(path=tmp_path / "weir.db")
    await reopened.open()
    try:  # the last seq was stored with the append that used it
        await reopened.append(LOG, [event(5)])
        assert [e.seq for e in await reopened.read(LOG, 0, 10)] == [1, 2, 3]
    finally:
        await reopened.close()


@pytest.mark.parametrize("synchronous", ["full", "normal"])
async def test_synchronous_modes_store_and_reopen(tmp_path: Path, synchronous: str) -> None:
    for expected in (1, 2):
        store = SqliteStore(path=tmp_path / "weir.db", synchronous=synchronous)  # type: ignore[arg-type]
        await store.open()
        await store.append(LOG, [event(expected)])
        assert [e.event.id for e in await store.read(LOG, 0, 10)][-1] == f"e{expected}"
        await store.close()


def test_unknown_synchronous_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SqliteStore(path=tmp_path / "weir.db", synchronous="off")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["directory", "not-a-database"])
async def test_unusable_file_is_store_unavailable(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "weir.db"
    if kind == "directory":
        path.mkdir()
    else:
        path.write_bytes(b"this is not an sqlite database, just some text" * 100)
    store = SqliteStore(path=path)
    with pytest.raises(StoreUnavailable) as info:
        await store.open()
    assert info.value.retriable
    await store.close()


@pytest.mark.parametrize("operation", ["append", "route", "finish", "read", "claim", "dead_letters"])
async def test_closed_store_is_unavailable(tmp_path: Path, operation: str) -> None:
    store = SqliteStore(path=tmp_path / "weir.db")
    await store.open()
    await store.append(LOG, [event(1)])
    await store.close()
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "append": lambda: store.append(LOG, [event(2)]),
        "route": lambda: store.route(LOG, 1, []),
        "finish": lambda: store.finish("ns/a", [1]),
        "read": lambda: store.read(LOG, 0, 10),
        "claim": lambda: store.claim("ns/a", 10),
        "dead_letters": lambda: store.dead_letters(LOG),
    }
    with pytest.raises(StoreUnavailable):
        await calls[operation]()


async def test_close_wakes_waiters_and_flushes(tmp_path: Path) -> None:
    store = SqliteStore(path=tmp_path / "weir.db")
    await store.open()
    waiter = asyncio.create_task(store.wait(LOG, 0, timeout=30))
    appends = [asyncio.create_task(store.append(LOG, [event(i)])) for i in range(10)]
    await asyncio.sleep(0)
    await store.close()
    await asyncio.wait_for(waiter, 5)
    await asyncio.gather(*appends)
    again = SqliteStore(path=tmp_path / "weir.db")
    await again.open()
    try:
        assert len(await again.read(LOG, 0, 100)) == 10
    finally:
        await again.close()


async def test_cancelled_append_still_counts(tmp_path: Path) -> None:
    store = SqliteStore(path=tmp_path / "weir.db", max_events=5)
    await store.open()
    try:
        task = asyncio.create_task(store.append(LOG, [event(1), event(2)]))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.append(LOG, [event(3)])
        assert (await store.stats()).events == len(await store.read(LOG, 0, 10)) == 3
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("", "{tmp}/data/weir.db"),
        (None, "{tmp}/data/weir.db"),
        ("sqlite://{tmp}/abs.db", "{tmp}/abs.db"),  # {tmp} starts with "/": sqlite:///...
        ("sqlite://rel/weir.db", "rel/weir.db"),
        ("memory://", None),
    ],
)
def test_store_urls(tmp_path: Path, url: str | None, path: str | None) -> None:
    store = open_store(url and url.format(tmp=tmp_path), data_dir=str(tmp_path / "data"), max_events=3)
    if path is None:
        assert isinstance(store, MemoryStore)
    else:
        assert isinstance(store, SqliteStore)
        assert store.path == Path(path.format(tmp=tmp_path))


@pytest.mark.parametrize(
    "url", ["redis://localhost:6379", "nats://", "kafka://", "sqlite://", "memory://x", "weir.db"]
)
def test_unsupported_store_url(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValueError, match="memory://"):
        open_store(url, data_dir=str(tmp_path))


@pytest.mark.parametrize(
    ("url", "shared", "polled"),
    [
        ("", False, False),
        (None, False, False),
        ("sqlite:///tmp/x.db", False, False),
        ("memory://", False, False),
        ("nats://127.0.0.1:4222", True, True),
        ("kafka://127.0.0.1:9092", True, False),  # its watch tells of everything (test_store_kafka)
    ],
)
def test_which_stores_are_shared_and_polled(url: str | None, shared: bool, polled: bool) -> None:
    assert (is_shared(url), needs_polling(url)) == (shared, polled)


async def test_default_store_creates_its_directory(tmp_path: Path) -> None:
    store = open_store("", data_dir=str(tmp_path / "a" / "b"))
    await store.open()
    try:
        await store.append(LOG, [Event({"specversion": "1.0", "id": "1", "source": "/", "type": "t"})])
        assert (tmp_path / "a" / "b" / "weir.db").is_file()
    finally:
        await store.close()
