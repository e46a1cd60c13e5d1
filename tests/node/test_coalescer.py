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


def test_a_lone_item_waits_about_the_window() -> None:
    c: Coalescer[int, int] = Coalescer(lambda items: list(items), window=0.05, max_batch=10)
    t0 = time.monotonic()
    assert c.submit(1) == 1
    assert time.monotonic() - t0 < 1.0
    c.close()
