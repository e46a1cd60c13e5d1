"""The node's metrics: a narrow ``MetricsAPI`` the flows and workers call, its Prometheus
implementation (prometheus-client, multi-process mode when ``PROMETHEUS_MULTIPROC_DIR`` is
set before the first import), and the series computed when /metrics is scraped.

Flows and workers only see ``MetricsAPI``; this module imports prometheus_client lazily, in
``PrometheusMetrics`` and the scrape, so that importing the interface never fixes the
library's process mode. Every series the node exports is declared in ``CATALOGUE`` (events)
or ``STATE_SERIES`` (state read at scrape time); names follow Prometheus conventions
(``emr_`` prefix, base units, ``_total`` for counters, ``_seconds`` for durations). Labels
never carry ids, addresses (except the hospital's own), paths or tokens.
"""

from __future__ import annotations

import contextlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from hsm.abc import EcdsaSignature, KeyStoreAPI, SignerAPI, WrappedKey
from node.audit.abc import AccessLogQueueAPI
from node.chain.models import AccessEntry
from storage.abc import CacheAPI, Health

if TYPE_CHECKING:
    from node.wiring import Node

Kind = Literal["counter", "histogram"]

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
HSM_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0)
WORKER_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class MetricSpec:
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


# Series counted or observed as things happen (every process writes its own; summed at scrape).
CATALOGUE: dict[str, MetricSpec] = {
    "emr_http_requests_total": MetricSpec(
        "counter",
        "HTTP requests by method, route template and status",
        ("method", "route", "status"),
    ),
    "emr_http_request_duration_seconds": MetricSpec(
        "histogram", "HTTP request latency by route template", ("method", "route"), HTTP_BUCKETS
    ),
    "emr_throttled_requests_total": MetricSpec(
        "counter", "Requests refused with 429 by the caller throttles", ("bucket",)
    ),
    "emr_records_uploaded_total": MetricSpec("counter", "Records committed (uploads)"),
    "emr_record_reads_total": MetricSpec(
        "counter", "Record reads logged for the chain, granted or denied", ("outcome",)
    ),
    "emr_consents_total": MetricSpec(
        "counter", "Signed consents relayed or queued by this node", ("action", "result")
    ),
    "emr_zk_proofs_total": MetricSpec("counter", "Zero-knowledge read proofs checked", ("result",)),
    "emr_break_glass_total": MetricSpec(
        "counter", "Emergency (break-glass) accesses opened", ("hospital",)
    ),
    "emr_worker_rounds_total": MetricSpec(
        "counter", "Background worker rounds by result", ("worker", "result")
    ),
    "emr_worker_items_total": MetricSpec(
        "counter", "Items background workers handled", ("worker",)
    ),
    "emr_worker_round_duration_seconds": MetricSpec(
        "histogram", "Background worker round duration", ("worker",), WORKER_BUCKETS
    ),
    "emr_hsm_operation_duration_seconds": MetricSpec(
        "histogram", "Key store (HSM) operation latency", ("operation",), HSM_BUCKETS
    ),
    "emr_hsm_operation_errors_total": MetricSpec(
        "counter", "Key store (HSM) operations that raised", ("operation",)
    ),
    "emr_cache_requests_total": MetricSpec("counter", "Cache lookups by result", ("result",)),
}

# Series read from the shared state when /metrics is scraped (gauges).
STATE_SERIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "emr_queue_depth": (
        "Items waiting: anchors, access_log, consent_relays, erasures (erasures capped)",
        ("queue",),
    ),
    "emr_anchor_lag_seconds": ("Age of the oldest record not anchored yet (0 when none)", ()),
    "emr_chain_head_block": ("The chain's head block number as this node sees it", ()),
    "emr_audit_mirror_lag_blocks": ("Blocks between the chain head and the audit mirror", ()),
    "emr_ipfs_nodes_reachable": ("IPFS nodes answering", ()),
    "emr_ipfs_replication_min": ("Configured minimum IPFS replication", ()),
    "emr_component_up": ("1 when a required component answers (see /readyz)", ("component",)),
    "emr_worker_up": ("1 when a background worker runs without error", ("worker",)),
}

ERASURE_DEPTH_CAP = 10_000


def exported_names() -> set[str]:
    """Every sample name the node can export (histograms' and counters' suffixes included)."""
    names: set[str] = set(STATE_SERIES)
    for name, spec in CATALOGUE.items():
        if spec.kind == "counter":
            names |= {name, name.removesuffix("_total") + "_created"}
        else:
            names |= {name + s for s in ("_bucket", "_sum", "_count", "_created")}
    return names


class MetricsAPI(ABC):
    """What flows and workers record. Names come from ``CATALOGUE``."""

    @abstractmethod
    def count(self, name: str, value: float = 1.0, **labels: str) -> None:
        """Add ``value`` to counter ``name``. Raises KeyError for an unknown name or labels."""

    @abstractmethod
    def observe(self, name: str, value: float, **labels: str) -> None:
        """Observe ``value`` (base units: seconds) in histogram ``name``."""

    @contextlib.contextmanager
    def timed(self, name: str, errors: str | None = None, **labels: str) -> Iterator[None]:
        """Observe the block's duration in ``name``; count ``errors`` when it raises."""
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            if errors is not None:
                self.count(errors, **labels)
            raise
        finally:
            self.observe(name, time.perf_counter() - start, **labels)


class NullMetrics(MetricsAPI):
    """Records nothing (hand-built nodes, maintenance commands)."""

    def count(self, name: str, value: float = 1.0, **labels: str) -> None:
        pass

    def observe(self, name: str, value: float, **labels: str) -> None:
        pass


NULL_METRICS = NullMetrics()


class MetricsExporterAPI(MetricsAPI):
    """Metrics that can also be scraped (``GET /metrics``); a node whose metrics are not
    exportable answers that route with 404."""

    @abstractmethod
    def exposition(self, state: Callable[[], Sequence[Any]] | None = None) -> tuple[bytes, str]:
        """The scrape body and its content type: every recorded series plus the metric
        families ``state()`` returns at scrape time."""


class PrometheusMetrics(MetricsExporterAPI):
    """prometheus-client metrics. ``multiprocess``: values go to files in
    ``PROMETHEUS_MULTIPROC_DIR`` (set before prometheus_client is first imported), and a
    scrape sums every process's files (the worker role's and each API process's);
    otherwise this instance keeps its own registry (several nodes may share a process)."""

    def __init__(self, *, multiprocess: bool = False) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.multiprocess = multiprocess
        self.registry: Any = None if multiprocess else CollectorRegistry(auto_describe=True)
        self._metrics: dict[str, Any] = {}
        for name, spec in CATALOGUE.items():
            if spec.kind == "counter":
                metric: Any = Counter(name, spec.help, spec.labels, registry=self.registry)
            else:
                metric = Histogram(
                    name, spec.help, spec.labels, buckets=spec.buckets, registry=self.registry
                )
            self._metrics[name] = metric

    def _child(self, name: str, labels: dict[str, str]) -> Any:
        metric = self._metrics[name]
        return metric.labels(**labels) if labels else metric

    def count(self, name: str, value: float = 1.0, **labels: str) -> None:
        self._child(name, labels).inc(value)

    def observe(self, name: str, value: float, **labels: str) -> None:
        self._child(name, labels).observe(value)

    def exposition(self, state: Callable[[], Sequence[Any]] | None = None) -> tuple[bytes, str]:
        """The text exposition of every process's series plus ``state()``'s families."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        registry = CollectorRegistry(auto_describe=False)
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.MultiProcessCollector(registry)
        else:
            registry.register(_Forward(lambda: list(self.registry.collect())))
        if state is not None:
            registry.register(_Forward(state))
        return generate_latest(registry), CONTENT_TYPE_LATEST


class _Forward:
    """A collector yielding what a callable returns at scrape time."""

    def __init__(self, families: Callable[[], Sequence[Any]]) -> None:
        self._families = families

    def collect(self) -> Iterator[Any]:
        yield from self._families()


def clean_multiprocess_dir(path: str) -> None:
    """Remove the previous run's value files (done by ``emr-node run`` at start)."""
    from pathlib import Path

    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for db in directory.glob("*.db"):
        db.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------
# State read at scrape time


class NodeState:
    """The gauges of ``STATE_SERIES`` for one node, read from its shared index, outboxes,
    chain and components. Results are kept ``ttl`` seconds so that scrapers cannot drive
    the probes (the readiness checks reach the chain, IPFS, Redis and the key store)."""

    def __init__(self, node: Node, *, ttl: float = 2.0) -> None:
        self._node = node
        self._ttl = ttl
        self._lock = threading.Lock()
        self._at = 0.0
        self._families: list[Any] = []

    def __call__(self) -> list[Any]:
        with self._lock:
            if not self._families or time.monotonic() - self._at >= self._ttl:
                self._families = self._read()
                self._at = time.monotonic()
            return self._families

    def _read(self) -> list[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from node.observability.health import readiness

        node = self._node
        values: dict[str, list[tuple[tuple[str, ...], float]]] = {n: [] for n in STATE_SERIES}

        def put(name: str, read: Callable[[], float], *labels: str) -> None:
            with contextlib.suppress(Exception):  # a failing source shows as component down
                values[name].append((labels, float(read())))

        put("emr_queue_depth", node.index.count_pending_anchors, "anchors")
        put("emr_queue_depth", node.access_log.count, "access_log")
        put("emr_queue_depth", node.relays.count, "consent_relays")
        put(
            "emr_queue_depth",
            lambda: len(node.index.pending_erasures(ERASURE_DEPTH_CAP)),
            "erasures",
        )
        put("emr_anchor_lag_seconds", lambda: _anchor_lag(node))
        try:
            head = node.chain.head_block()
        except Exception:  # the chain is away: emr_component_up{component="chain"} says so
            head = None
        if head is not None:
            values["emr_chain_head_block"].append(((), float(head)))
            put("emr_audit_mirror_lag_blocks", lambda: max(0, head - node.mirror.mirror_cursor()))
        blobs = node.health_checks.get("blobs")
        if blobs is not None:
            health: Health = blobs.check_health()
            nodes = health.details.get("nodes", {})
            put(
                "emr_ipfs_nodes_reachable",
                lambda: sum(1 for p in nodes.values() if p.get("reachable")),
            )
            put("emr_ipfs_replication_min", lambda: node.settings.storage.replication_min)
        for name, check in readiness(node).items():
            values["emr_component_up"].append(((name,), 1.0 if check.ok else 0.0))
        for name, status in node.background.status().items():
            up = status.running and not status.last_error
            values["emr_worker_up"].append(((name,), 1.0 if up else 0.0))
        families = []
        for name, (help_text, labels) in STATE_SERIES.items():
            family = GaugeMetricFamily(name, help_text, labels=list(labels))
            for label_values, value in values[name]:
                family.add_metric(list(label_values), value)
            families.append(family)
        return families


def _anchor_lag(node: Node) -> float:
    oldest = node.index.pending_anchors(1)
    return max(0.0, time.time() - oldest[0].created_at) if oldest else 0.0


# ---------------------------------------------------------------------------------------
# Metered wrappers (built by the wiring around the key store, the cache and the access log).
# Each is exactly its interface: what only a backend has (the Redis cache's health check,
# the software key store's file) is reached through the backend object the wiring holds,
# never through a wrapper.


class MeteredSigner(SignerAPI):
    def __init__(self, inner: SignerAPI, metrics: MetricsAPI) -> None:
        self._inner = inner
        self._metrics = metrics

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._inner!r})"

    @property
    def address(self) -> str:
        return self._inner.address

    def sign_digest(self, digest: bytes) -> EcdsaSignature:
        with _hsm(self._metrics, "sign"):
            return self._inner.sign_digest(digest)


def _hsm(metrics: MetricsAPI, operation: str) -> contextlib.AbstractContextManager[None]:
    return metrics.timed(
        "emr_hsm_operation_duration_seconds",
        errors="emr_hsm_operation_errors_total",
        operation=operation,
    )


class MeteredKeyStore(KeyStoreAPI):
    """Times every key-store operation (``emr_hsm_operation_duration_seconds``)."""

    def __init__(self, inner: KeyStoreAPI, metrics: MetricsAPI) -> None:
        self._inner = inner
        self._metrics = metrics
        self._signer = MeteredSigner(inner.signer(), metrics)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._inner!r})"

    @property
    def inner(self) -> KeyStoreAPI:
        return self._inner

    @property
    def current_kek_version(self) -> int:
        return self._inner.current_kek_version

    def kek_versions(self) -> list[int]:
        with _hsm(self._metrics, "list_keks"):
            return self._inner.kek_versions()

    def rotate_kek(self) -> int:
        with _hsm(self._metrics, "rotate_kek"):
            return self._inner.rotate_kek()

    def destroy_kek(self, version: int) -> None:
        with _hsm(self._metrics, "destroy_kek"):
            self._inner.destroy_kek(version)

    def wrap(self, data_key: bytes) -> WrappedKey:
        with _hsm(self._metrics, "wrap"):
            return self._inner.wrap(data_key)

    def wrap_many(self, data_keys: Sequence[bytes]) -> list[WrappedKey]:
        with _hsm(self._metrics, "wrap_many"):
            return self._inner.wrap_many(data_keys)

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        with _hsm(self._metrics, "unwrap"):
            return self._inner.unwrap(wrapped)

    def unwrap_many(self, wrapped: Sequence[WrappedKey]) -> list[bytes | None]:
        with _hsm(self._metrics, "unwrap_many"):
            return self._inner.unwrap_many(wrapped)

    def signer(self) -> SignerAPI:
        return self._signer

    def derive_secret(self, label: str) -> bytes:
        with _hsm(self._metrics, "derive_secret"):
            return self._inner.derive_secret(label)

    def rotate_signer(self) -> SignerAPI:
        with _hsm(self._metrics, "rotate_signer"):
            return MeteredSigner(self._inner.rotate_signer(), self._metrics)

    def pending_signer(self) -> SignerAPI | None:
        pending = self._inner.pending_signer()
        return None if pending is None else MeteredSigner(pending, self._metrics)

    def commit_signer(self) -> SignerAPI:
        with _hsm(self._metrics, "commit_signer"):
            self._signer = MeteredSigner(self._inner.commit_signer(), self._metrics)
        return self._signer

    def close(self) -> None:
        self._inner.close()


class MeteredCache(CacheAPI):
    """Counts cache hits and misses (``emr_cache_requests_total``)."""

    def __init__(self, inner: CacheAPI, metrics: MetricsAPI) -> None:
        self._inner = inner
        self._metrics = metrics

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._inner!r})"

    @property
    def inner(self) -> CacheAPI:
        return self._inner

    def get(self, key: str) -> bytes | None:
        value = self._inner.get(key)
        self._metrics.count("emr_cache_requests_total", result="miss" if value is None else "hit")
        return value

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self._inner.set(key, value, ttl)

    def delete(self, key: str) -> None:
        self._inner.delete(key)

    def close(self) -> None:
        self._inner.close()


class MeteredAccessLog(AccessLogQueueAPI):
    """Counts reads as they are logged for the chain (``emr_record_reads_total``): every
    read, granted or denied, enqueues exactly one entry before anything is disclosed."""

    def __init__(self, inner: AccessLogQueueAPI, metrics: MetricsAPI) -> None:
        self._inner = inner
        self._metrics = metrics

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._inner!r})"

    @property
    def inner(self) -> AccessLogQueueAPI:
        return self._inner

    def _count(self, entries: Sequence[AccessEntry]) -> None:
        granted = sum(1 for e in entries if e.granted)
        if granted:
            self._metrics.count("emr_record_reads_total", granted, outcome="granted")
        if len(entries) - granted:
            self._metrics.count("emr_record_reads_total", len(entries) - granted, outcome="denied")

    def enqueue(self, entries: Sequence[AccessEntry]) -> None:
        self._inner.enqueue(entries)
        self._count(entries)

    async def enqueue_async(self, entries: Sequence[AccessEntry]) -> None:
        await self._inner.enqueue_async(entries)
        self._count(entries)

    def pending(self, limit: int, fence: int | None = None) -> list[tuple[int, AccessEntry]]:
        return self._inner.pending(limit, fence)

    def remove(self, ids: Sequence[int]) -> None:
        self._inner.remove(ids)

    def count(self) -> int:
        return self._inner.count()

    def close(self) -> None:
        self._inner.close()
