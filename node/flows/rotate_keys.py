"""KEK rotation: new records use a new KEK at once; a background job re-wraps the data keys
of existing records; an old KEK is destroyed only once nothing refers to it.

No record is unreadable at any moment: the old KEK stays until the index holds no key
wrapped by it, and a key is swapped in the index by compare-and-set, so a concurrent re-wrap
or rotation never loses one. Re-wrapping is resumable by construction (each round looks for
keys still at an old version). A data key exists only in memory, between unwrap and wrap.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from hsm.abc import KeyStoreAPI, WrappedKey
from hsm.exceptions import KeyNotFound
from node.roles.abc import BackgroundWorkersAPI
from storage.abc import RecordIndexAPI
from storage.models import KeyUpdate

__all__ = [
    "KekRewrapJob",
    "RotationStatus",
    "retire_unused_keks",
    "rewrap_batch",
    "rotate",
    "rotation_status",
]

log = logging.getLogger(__name__)


REWRAP_WORKER = "kek-rewrap"  # the background worker running ``KekRewrapJob``


def rotate(keys: KeyStoreAPI, background: BackgroundWorkersAPI | None = None) -> int:
    """Create a new KEK version, which wraps every new data key from now on; return it.
    With ``background``, wake its re-wrap worker to start on the existing keys at once."""
    version = keys.rotate_kek()
    log.info("KEK rotated to version %d; existing data keys will be re-wrapped", version)
    if background is not None:
        background.wake(REWRAP_WORKER)
    return version


def rewrap_batch(keys: KeyStoreAPI, index: RecordIndexAPI, limit: int) -> int:
    """Re-wrap up to ``limit`` data keys held by a KEK older than the current one; return
    how many records changed.

    A key that no longer unwraps (damaged) is logged and left as is: its KEK then stays.
    """
    if limit <= 0:
        return 0
    current = keys.current_kek_version
    changed = 0
    remaining = limit
    for version in keys.kek_versions():
        if version == current or remaining <= 0:
            continue
        found = index.wrapped_keys_with(version, remaining)
        if not found:
            continue
        remaining -= len(found)
        record_ids: list[bytes] = []
        data_keys: list[bytes] = []
        try:
            # One unwrap_many per batch: the key audit log gets one entry, not one per key.
            unwrapped = keys.unwrap_many(
                [WrappedKey(stored.kek_version, stored.blob) for _rid, stored in found]
            )
            for (record_id, _stored), data_key in zip(found, unwrapped, strict=True):
                if data_key is None:
                    log.error(
                        "data key of record 0x%s does not unwrap with KEK v%d; left as is",
                        record_id.hex(),
                        version,
                    )
                    continue
                data_keys.append(data_key)
                record_ids.append(record_id)
            unwrapped.clear()
            # One snapshot of the current KEK for the whole batch (wrap_many).
            wrapped = keys.wrap_many(data_keys)
        except KeyNotFound:
            # Destroyed under us (another node retired it): nothing left to unwrap with.
            log.error("KEK v%d is gone while %d records still refer to it", version, len(found))
            continue
        finally:
            data_keys.clear()
        updates = [
            KeyUpdate(rid, version, w.kek_version, w.blob)
            for rid, w in zip(record_ids, wrapped, strict=True)
            if w.kek_version != version
        ]
        done = index.replace_wrapped_keys(updates)
        changed += done
        log.info("re-wrapped %d data keys from KEK v%d", done, version)
    return changed


def retire_unused_keks(
    keys: KeyStoreAPI, index: RecordIndexAPI, *, only: Collection[int] | None = None
) -> list[int]:
    """Destroy every non-current KEK (of ``only``, if given) that no record refers to;
    return the versions destroyed.

    The caller must know that no writer still holds a key wrapped by such a KEK but not yet
    indexed (an upload in flight across a rotation): ``KekRewrapJob`` waits a grace period.
    """
    current = keys.current_kek_version
    candidates = [v for v in keys.kek_versions() if v != current and (only is None or v in only)]
    if not candidates:
        return []
    usage = index.kek_usage()  # read after the candidates: a rotation since only adds
    retired: list[int] = []
    for version in candidates:
        if usage.get(version, 0) == 0:
            keys.destroy_kek(version)
            log.info("KEK v%d destroyed: no record refers to it", version)
            retired.append(version)
    return retired


@dataclass(frozen=True, slots=True)
class RotationStatus:
    current: int
    usage: dict[int, int]  # records per KEK version
    pending: int  # records whose key a live older KEK wraps: the re-wrap job's backlog
    live: list[int]  # KEK versions the store still holds
    retired: list[int]  # versions destroyed
    unreadable: int  # records at a version the store no longer holds (should stay 0)
    rewrap_error: str | None = None  # the re-wrap worker's last error (when asked)


def rotation_status(
    keys: KeyStoreAPI, index: RecordIndexAPI, background: BackgroundWorkersAPI | None = None
) -> RotationStatus:
    """Where rotation stands: current KEK, records per version, backlog, retired KEKs and,
    with ``background``, the re-wrap worker's last error."""
    live = keys.kek_versions()
    current = keys.current_kek_version
    usage = index.kek_usage()
    return RotationStatus(
        current=current,
        usage=usage,
        pending=sum(n for v, n in usage.items() if v != current and v in live),
        live=live,
        retired=[v for v in range(1, current) if v not in live],
        unreadable=sum(n for v, n in usage.items() if v not in live),
        rewrap_error=background.last_error(REWRAP_WORKER) if background is not None else None,
    )


class KekRewrapJob:
    """One round of the background re-wrap worker: re-wrap a batch, and once an old KEK has
    had no record for ``grace`` seconds, destroy it.

    The grace period covers writers that wrapped a key with the old KEK just before a
    rotation and index it a little later (uploads in flight, re-wraps on other nodes): it
    must exceed the longest upload. A record arriving meanwhile resets the wait.
    """

    def __init__(
        self,
        keys: KeyStoreAPI,
        index: RecordIndexAPI,
        *,
        batch_size: int = 500,
        grace: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys = keys
        self.index = index
        self.batch_size = batch_size
        self.grace = grace
        self._clock = clock
        self._unused_since: dict[int, float] = {}

    def __call__(self) -> int:
        changed = rewrap_batch(self.keys, self.index, self.batch_size)
        if changed:
            # Keys were still arriving at an old version (say, uploads in flight across the
            # rotation): every wait starts again.
            self._unused_since.clear()
        if changed >= self.batch_size:
            return changed  # more to do: the worker calls again at once
        current = self.keys.current_kek_version
        old = [v for v in self.keys.kek_versions() if v != current]
        now = self._clock()
        for version in list(self._unused_since):
            if version not in old:
                del self._unused_since[version]
        for version in old:
            if self.index.wrapped_keys_with(version, 1):
                self._unused_since.pop(version, None)
            else:
                self._unused_since.setdefault(version, now)
        due = [v for v, since in self._unused_since.items() if now - since >= self.grace]
        if due:
            for version in retire_unused_keks(self.keys, self.index, only=due):
                self._unused_since.pop(version, None)
        return changed
