import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from node.coalescer import Coalescer


def test_concurrent_submits_share_commits_and_get_their_own_results() -> None:
    batches: list[int] = []

    def commit(items: Sequence[int]) -> list[int]:
        batches.append(len(items))
        time.sleep(0.01)  # a slow fsync: followers pile up meanwhile
        return [i * 2 for i in items]

    c: Coalescer[int, int] = Coalescer(commit, window=0.005, max_batch=50)
    results: dict[int, int] = {}

    def submit(i: int) -> None:
        results[i] = c.submit(i)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c.close()
    assert results == {i: i * 2 for i in range(200)}
    assert sum(batches) == 200
    assert max(batches) <= 50
    assert len(batches) < 200 / 4  # coalesced, not one commit per item


def test_a_failed_commit_fails_every_item_of_its_batch_only() -> None:
    def commit(items: Sequence[str]) -> list[str]:
        if "bad" in items:
            raise OSError("disk full")
        return list(items)

    c: Coalescer[str, str] = Coalescer(commit, window=0, max_batch=10)
    with pytest.raises(OSError):
        c.submit("bad")
    assert c.submit("good") == "good"
    c.close()
    with pytest.raises(RuntimeError):
        c.submit("after close")


def test_an_exception_result_fails_its_own_item_only() -> None:
    def commit(items: Sequence[str]) -> list[str | BaseException]:
        return [ValueError(i) if i.startswith("bad") else i.upper() for i in items]

    c: Coalescer[str, str] = Coalescer(commit, window=0.2, max_batch=10)
    results: dict[str, object] = {}

    def submit(item: str) -> None:
        try:
            results[item] = c.submit(item)
        except ValueError as err:
            results[item] = err

    threads = [threading.Thread(target=submit, args=(i,)) for i in ("a", "bad1", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["a"] == "A" and results["b"] == "B"
    assert isinstance(results["bad1"], ValueError)
    with pytest.raises(ValueError):  # commit_now without commit_all: all or nothing
        c.commit_now(["c", "bad2"])
    c.close()


def test_commit_now_uses_commit_all() -> None:
    c: Coalescer[str, str] = Coalescer(
        lambda items: [ValueError(i) for i in items],
        commit_all=lambda items: [i + "!" for i in items],
        window=0,
        max_batch=10,
    )
    assert list(c.commit_now(["x", "y"])) == ["x!", "y!"]
    with pytest.raises(ValueError):
        c.submit("z")
    c.close()


def test_a_lone_item_waits_about_the_window() -> None:
    c: Coalescer[int, int] = Coalescer(lambda items: list(items), window=0.05, max_batch=10)
    t0 = time.monotonic()
    assert c.submit(1) == 1
    assert time.monotonic() - t0 < 1.0
    c.close()


def test_awaited_submits_share_commits_and_get_their_own_results() -> None:
    batches: list[int] = []
    commit_threads: set[str] = set()

    def commit(items: Sequence[int]) -> list[int]:
        batches.append(len(items))
        commit_threads.add(threading.current_thread().name)
        time.sleep(0.01)
        return [i * 2 for i in items]

    c: Coalescer[int, int] = Coalescer(commit, window=0.005, max_batch=50, name="flusher")

    async def main() -> list[int]:
        return list(await asyncio.gather(*(c.submit_async(i) for i in range(200))))

    assert asyncio.run(main()) == [i * 2 for i in range(200)]
    c.close()
    assert sum(batches) == 200
    assert max(batches) <= 50
    assert len(batches) < 200 / 4
    assert commit_threads == {"flusher"}  # the event loop never ran a commit


def test_threads_and_coroutines_can_share_a_batch() -> None:
    release = threading.Event()
    batches: list[list[int]] = []

    def commit(items: Sequence[int]) -> list[int]:
        release.wait(5)
        batches.append(list(items))
        return [-i for i in items]

    c: Coalescer[int, int] = Coalescer(commit, window=0, max_batch=100)
    results: dict[int, int] = {}
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, c.submit(i)))
        for i in range(1, 4)
    ]

    async def main() -> list[int]:
        for t in threads:
            t.start()
        waiting = [asyncio.ensure_future(c.submit_async(i)) for i in range(4, 8)]
        await asyncio.sleep(0)  # every coroutine has queued its item
        release.set()
        return list(await asyncio.gather(*waiting))

    assert asyncio.run(main()) == [-4, -5, -6, -7]
    for t in threads:
        t.join()
    c.close()
    assert results == {1: -1, 2: -2, 3: -3}
    assert sorted(i for batch in batches for i in batch) == list(range(1, 8))


def test_a_failed_commit_raises_in_the_awaiting_coroutine() -> None:
    def commit(items: Sequence[str]) -> list[str]:
        if "bad" in items:
            raise OSError("disk full")
        return list(items)

    c: Coalescer[str, str] = Coalescer(commit, window=0, max_batch=10)

    async def main() -> str:
        with pytest.raises(OSError, match="disk full"):
            await c.submit_async("bad")
        return await c.submit_async("good")

    assert asyncio.run(main()) == "good"
    c.close()

    async def after_close() -> None:
        await c.submit_async("late")

    with pytest.raises(RuntimeError):
        asyncio.run(after_close())


def test_a_cancelled_waiter_still_commits_and_spares_its_batch_mates() -> None:
    release = threading.Event()
    committed: list[int] = []

    def commit(items: Sequence[int]) -> list[int]:
        release.wait(5)
        committed.extend(items)
        return list(items)

    c: Coalescer[int, int] = Coalescer(commit, window=0, max_batch=10)

    async def main() -> int:
        gone = asyncio.ensure_future(c.submit_async(1))
        stays = asyncio.ensure_future(c.submit_async(2))
        await asyncio.sleep(0)
        gone.cancel()  # the client hung up while its upload was being committed
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await gone
        return await stays

    assert asyncio.run(main()) == 2
    c.close()
    assert sorted(committed) == [1, 2]  # submitted means stored
