"""A bounded, seeded chaos run across the hospitals of one chain (issue 14).

Three parts, each usable alone:

- ``Workload``: threads that upload records, relay patients' consents (grants and revokes,
  one patient at a time in nonce order), read (the patient, a granted clinician of another
  hospital, a break-glass clinician) and open break-glass, at every hospital. What a node
  acknowledged (a 2xx answer) goes into the ``Ledger``; anything else is only counted.
- ``plan_faults`` / ``FaultInjector``: a fault schedule drawn from the seed alone (which fault,
  which hospital, when, for how long): kill an API process, kill a worker, cut a hospital's
  MySQL connection, kill an IPFS daemon, cut the chain for one hospital or for all. Each fault
  is healed (process restarted, proxy restored, daemon restarted) before the next one.
- ``check``: with every fault healed, every acknowledged upload is readable, anchored exactly
  once (one ``RecordAnchored`` per record id on the chain) and verifies; every acknowledged
  consent and break-glass is on the chain; the consent caches agree with the chain; each
  node's audit mirror equals the chain's events.

The seed (``EMR_CHAOS_SEED``, random when unset) fixes the fault plan and each workload
thread's choices; the threads' interleaving and the processes' timing do not replay exactly.
"""

from __future__ import annotations

import os
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3

from node.chain.artifacts import load_artifact
from node.chain.deploy import Deployment
from node.client import ApiError, EmrClient, Scope
from node.consent.typed_data import ScopeKind, category_hash

SEED_ENV = "EMR_CHAOS_SEED"
SECONDS_ENV = "EMR_CHAOS_SECONDS"
FAULTS = ("kill_api", "kill_worker", "cut_mysql", "kill_ipfs", "cut_chain")
ALL_HOSPITALS = -1  # a cut_chain target: every hospital loses the chain at once
CATEGORIES = ("lab", "imaging")
CHECK_THREADS = 6


def chaos_seed() -> int:
    raw = os.environ.get(SEED_ENV, "").strip()
    return int(raw, 0) if raw else secrets.randbelow(2**32)


def chaos_seconds() -> float:
    return float(os.environ.get(SECONDS_ENV, "").strip() or 60)


class ChaosTarget(Protocol):
    """What the chaos run needs from a running consortium (see ``HarnessTarget``)."""

    @property
    def size(self) -> int: ...

    def url(self, i: int) -> str:
        """Hospital ``i``'s API base URL right now (it may change when the API restarts)."""
        ...

    def admin_token(self, i: int) -> str: ...

    def chain_url(self) -> str:
        """The chain's RPC URL behind every proxy (for the checker)."""
        ...

    def deployment(self) -> Deployment: ...

    def inject(self, fault: str, hospital: int) -> None:
        """Start ``fault`` (one of FAULTS) at ``hospital`` (ALL_HOSPITALS: cut_chain only)."""
        ...

    def heal(self, fault: str, hospital: int) -> None:
        """Undo ``inject``: restart what was killed, restore what was cut; wait until it
        serves again."""
        ...

    def revive(self) -> None:
        """Restart any process that is not running (whatever stopped it)."""
        ...

    @property
    def notes(self) -> list[str]:
        """What the target had to do beyond the plan (processes restarted)."""
        ...


# -- the fault plan -------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the run starts
    kind: str
    hospital: int
    hold: float  # seconds between inject and heal

    def __str__(self) -> str:
        where = "all" if self.hospital == ALL_HOSPITALS else f"h{self.hospital}"
        return f"t+{self.at:5.1f}s {self.kind:<11} {where:<3} for {self.hold:.1f}s"


def plan_faults(seed: int, seconds: float, hospitals: int) -> list[Fault]:
    """The fault schedule of a run: a function of the seed alone. Every kind of fault comes
    at least once when the run is long enough (kinds are dealt from shuffled decks)."""
    rng = random.Random(f"faults:{seed}")
    plan: list[Fault] = []
    deck: list[str] = []
    t = rng.uniform(2.0, 5.0)
    while True:
        if not deck:
            deck = list(FAULTS)
            rng.shuffle(deck)
        kind = deck.pop()
        hold = rng.uniform(1.0, 4.0)
        target = rng.randrange(hospitals)
        if kind == "cut_chain" and rng.random() < 0.4:
            target = ALL_HOSPITALS
        if t + hold > seconds:
            break
        plan.append(Fault(round(t, 2), kind, target, round(hold, 2)))
        t += hold + rng.uniform(1.5, 5.0)
    return plan


@dataclass
class FaultLog:
    done: list[tuple[Fault, float, float]] = field(default_factory=list)  # fault, t_in, t_out
    errors: list[str] = field(default_factory=list)


class FaultInjector:
    """Runs a plan against a target, one fault at a time, healing each before the next."""

    def __init__(self, target: ChaosTarget, plan: list[Fault], log: Callable[[str], None]) -> None:
        self.target = target
        self.plan = plan
        self.record = FaultLog()
        self._log = log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-faults", daemon=True)

    def start(self, t0: float) -> None:
        self._t0 = t0
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        for fault in self.plan:
            delay = self._t0 + fault.at - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            t_in = time.monotonic() - self._t0
            self._log(f"fault  {fault}")
            try:
                self.target.inject(fault.kind, fault.hospital)
            except Exception as err:  # a fault that cannot be injected is a harness error
                self.record.errors.append(f"inject {fault}: {err!r}")
            self._stop.wait(fault.hold)
            try:
                self.target.heal(fault.kind, fault.hospital)
            except Exception as err:
                self.record.errors.append(f"heal {fault}: {err!r}")
            t_out = time.monotonic() - self._t0
            self._log(f"healed {fault} (at t+{t_out:.1f}s)")
            self.record.done.append((fault, t_in, t_out))


# -- the workload -------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    record_id: str
    hospital: int
    patient: str
    category: str
    content: bytes


@dataclass(frozen=True)
class Consent:
    kind: str  # "grant" | "revoke"
    hospital: int  # the node that acknowledged it
    patient: str
    grantee: str
    category: str
    expires_at: int  # grants only (0 for revokes)
    status: str  # "relayed" | "queued"
    relay_id: int | None


@dataclass(frozen=True)
class BreakGlass:
    hospital: int
    patient: str
    clinician: str
    record_id: str
    expires_at: int


@dataclass
class Ledger:
    """What the nodes acknowledged (a 2xx answer), and counts of everything else."""

    uploads: dict[str, Upload] = field(default_factory=dict)
    consents: list[Consent] = field(default_factory=list)
    break_glass: list[BreakGlass] = field(default_factory=list)
    ok: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)  # "op status" -> n
    violations: list[str] = field(default_factory=list)  # seen during the run
    notes: list[str] = field(default_factory=list)  # worth a look, not violations
    lock: threading.Lock = field(default_factory=threading.Lock)

    def summary(self) -> str:
        ok = ", ".join(f"{k} {v}" for k, v in sorted(self.ok.items()))
        failed = ", ".join(f"{k}: {v}" for k, v in sorted(self.failed.items()))
        queued = sum(1 for c in self.consents if c.status == "queued")
        return (
            f"acknowledged: {len(self.uploads)} uploads, {len(self.consents)} consents "
            f"({queued} queued), {len(self.break_glass)} break-glass; ok ops: {ok}; "
            f"refused/failed: {failed or 'none'}"
        )


@dataclass
class Patient:
    account: LocalAccount
    lock: threading.Lock = field(default_factory=threading.Lock)
    pending: tuple[int, int] | None = None  # (hospital, relay id) of a queued consent
    # what the acknowledged consents say, per (grantee, category): expiry (0: revoked)
    believed: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass
class Staff:
    hospital_token: str
    auditor_token: str
    doctor: LocalAccount  # physician: grantee of consents, break-glass clinician
    chief: LocalAccount  # emergency: approves break-glass


def _status(err: Exception) -> str:
    if isinstance(err, ApiError):
        return str(err.status)
    return type(err).__name__


class Workload:
    """Mixed traffic against every hospital; ``run`` until ``stop`` is set."""

    def __init__(
        self,
        target: ChaosTarget,
        seed: int,
        *,
        threads: int = 4,
        patients: int = 8,
        timeout: float = 15.0,
    ) -> None:
        self.target = target
        self.seed = seed
        self.threads = threads
        self.timeout = timeout
        rng = random.Random(f"actors:{seed}")
        self.patients = [Patient(Account.from_key(rng.randbytes(32))) for _ in range(patients)]
        self.staff: list[Staff] = []
        self.ledger = Ledger()
        self.sessions: dict[tuple[int, str], str] = {}
        self._clients: dict[tuple[str, str | None], EmrClient] = {}
        self._clients_lock = threading.Lock()
        self._bg_taken: set[tuple[str, str]] = set()  # (record, clinician): one each

    # -- clients ---------------------------------------------------------------------------
    def client(self, i: int, token: str | None = None) -> EmrClient:
        key = (self.target.url(i), token)
        with self._clients_lock:
            c = self._clients.get(key)
            if c is None:
                c = self._clients[key] = EmrClient(key[0], token, timeout=self.timeout)
            return c

    def close(self) -> None:
        with self._clients_lock:
            for c in self._clients.values():
                c.close()
            self._clients.clear()

    def patient(self, address: str) -> Patient:
        return next(p for p in self.patients if p.account.address == address)

    def session(self, i: int, account: LocalAccount) -> str:
        key = (i, account.address)
        s = self.sessions.get(key)
        if s is None:
            s = self.sessions[key] = self.client(i).login(account)
        return s

    # -- setup (before any fault) ----------------------------------------------------------
    def setup(self) -> None:
        rng = random.Random(f"staff:{self.seed}")
        for i in range(self.target.size):
            admin = self.client(i, self.target.admin_token(i))
            hospital = admin.create_token(f"chaos-ehr-{i}", "hospital")
            auditor = admin.create_token(f"chaos-audit-{i}", "auditor")
            doctor = Account.from_key(rng.randbytes(32))
            chief = Account.from_key(rng.randbytes(32))
            h = self.client(i, hospital)
            h.add_clinician(doctor.address, "physician")
            h.add_clinician(chief.address, "emergency")
            self.staff.append(Staff(hospital, auditor, doctor, chief))
        self.chain = ChainView(self.target.chain_url(), self.target.deployment())
        self.t0 = time.monotonic()

    # -- operations ------------------------------------------------------------------------
    def _op(self, name: str, fn: Callable[[], object]) -> object | None:
        try:
            out = fn()
        except Exception as err:  # not acknowledged: counted, never recorded
            self._failed(name, err)
            return None
        with self.ledger.lock:
            self.ledger.ok[name] += 1
        return out

    def _failed(self, name: str, err: Exception) -> None:
        """Count a refusal; note the first few 500s (an outage should be a 503)."""
        key = f"{name} {_status(err)}"
        with self.ledger.lock:
            self.ledger.failed[key] += 1
            if isinstance(err, ApiError) and err.status == 500 and self.ledger.failed[key] <= 3:
                self.ledger.notes.append(
                    f"t+{time.monotonic() - self.t0:.1f}s {name} answered 500: {err.detail}"
                )

    def upload(self, rng: random.Random) -> None:
        i = rng.randrange(self.target.size)
        patient = rng.choice(self.patients).account.address
        category = rng.choice(CATEGORIES)
        content = f"chaos {self.seed} {rng.getrandbits(64):016x} {category}".encode()
        out = self._op(
            "upload",
            lambda: self.client(i, self.staff[i].hospital_token).upload(
                patient, content, category=category, content_type="text/plain"
            ),
        )
        if isinstance(out, dict):
            rid = str(out["record_id"])
            with self.ledger.lock:
                self.ledger.uploads[rid] = Upload(rid, i, patient, category, content)

    def _settled(self, p: Patient) -> bool:
        """No queued consent of ``p`` is still waiting (nonces go in order: the next
        signature would take the queued one's nonce)."""
        if p.pending is None:
            return True
        i, relay_id = p.pending
        try:
            status = self.client(i).relay_status(relay_id)["status"]
        except Exception:
            return False
        if status == "queued":
            return False
        p.pending = None
        return True

    def consent(self, rng: random.Random) -> None:
        p = rng.choice(self.patients)
        if not p.lock.acquire(blocking=False):
            return
        try:
            if not self._settled(p):
                return
            i = rng.randrange(self.target.size)
            grantee = self.staff[rng.randrange(self.target.size)].doctor.address
            category = rng.choice(CATEGORIES)
            live = p.believed.get((grantee, category), 0) > time.time()
            kind = "revoke" if live and rng.random() < 0.5 else "grant"
            public = self.client(i)
            if kind == "grant":
                expires = int(time.time()) + 3600 + rng.randrange(10**6)
                out = self._op(
                    "grant",
                    lambda: public.grant(
                        p.account, grantee, Scope.category(category), expires_at=expires
                    ),
                )
            else:
                expires = 0
                out = self._op(
                    "revoke",
                    lambda: public.revoke(p.account, grantee, Scope.category(category)),
                )
            if not isinstance(out, dict):
                return
            status = str(out["status"])
            relay_id = out.get("relay_id")
            if status not in ("relayed", "queued"):
                self._violation(f"{kind} acknowledged with status {status!r}: {out}")
                return
            with self.ledger.lock:
                self.ledger.consents.append(
                    Consent(
                        kind, i, p.account.address, grantee, category, expires, status, relay_id
                    )
                )
            p.believed[(grantee, category)] = expires
            if status == "queued":
                p.pending = (i, int(relay_id))
        finally:
            p.lock.release()

    def _pick_upload(self, rng: random.Random) -> Upload | None:
        with self.ledger.lock:
            if not self.ledger.uploads:
                return None
            # dicts keep insertion order: a seeded index, not a set's hash order
            keys = list(self.ledger.uploads)
            return self.ledger.uploads[keys[rng.randrange(len(keys))]]

    def read(self, rng: random.Random) -> None:
        up = self._pick_upload(rng)
        if up is None:
            return
        p = self.patient(up.patient)
        readers = [p.account]
        readers += [
            s.doctor
            for s in self.staff
            if p.believed.get((s.doctor.address, up.category), 0) > time.time()
        ]
        reader = rng.choice(readers)
        public = self.client(up.hospital)
        started = time.monotonic()
        try:
            out = public.read(up.record_id, self.session(up.hospital, reader))
        except Exception as err:
            self._failed("read", err)
            if isinstance(err, ApiError) and err.status == 403 and reader is not p.account:
                self._refused_with_live_grant(up, reader.address, started)
            return
        with self.ledger.lock:
            self.ledger.ok["read"] += 1
        if out.content != up.content:
            self._violation(f"read of {up.record_id} returned other bytes: {out.content!r}")

    def _refused_with_live_grant(self, up: Upload, reader: str, started: float) -> None:
        """A granted reader refused: fine while a revoke is in flight or the node cannot
        reach the chain (it fails closed); noted with the time, to set against the faults."""
        try:
            expiry = self.chain.consent_expiry(up.patient, reader, up.category)
        except Exception:
            return
        if expiry > time.time():
            with self.ledger.lock:
                self.ledger.notes.append(
                    f"t+{started - self.t0:.1f}s h{up.hospital} refused {reader} a read of "
                    f"{up.record_id} ({up.category}) although the chain holds a live grant"
                )

    def break_glass(self, rng: random.Random) -> None:
        up = self._pick_upload(rng)
        if up is None:
            return
        staff = self.staff[up.hospital]
        key = (up.record_id, staff.doctor.address)
        with self.ledger.lock:
            if key in self._bg_taken:
                return
            self._bg_taken.add(key)
        hospital = self.client(up.hospital, staff.hospital_token)
        out = self._op(
            "break_glass",
            lambda: hospital.break_glass(
                up.patient,
                staff.doctor.address,
                "chaos: unconscious patient",
                approved_by=staff.chief.address,
                duration=3600,
                record_id=up.record_id,
            ),
        )
        if not isinstance(out, dict):
            return
        with self.ledger.lock:
            self.ledger.break_glass.append(
                BreakGlass(
                    up.hospital,
                    up.patient,
                    staff.doctor.address,
                    up.record_id,
                    int(out.get("expires_at", 0)),
                )
            )
        public = self.client(up.hospital)
        got = self._op(
            "read_bg",
            lambda: public.read(up.record_id, self.session(up.hospital, staff.doctor)),
        )
        if isinstance(got, httpx.Response) and got.content != up.content:
            self._violation(f"break-glass read of {up.record_id} returned other bytes")

    def _violation(self, text: str) -> None:
        with self.ledger.lock:
            self.ledger.violations.append(text)

    # -- threads ---------------------------------------------------------------------------
    def _loop(self, n: int, stop: threading.Event) -> None:
        rng = random.Random(f"workload:{self.seed}:{n}")
        ops = [self.upload] * 4 + [self.consent] * 3 + [self.read] * 4 + [self.break_glass]
        while not stop.is_set():
            rng.choice(ops)(rng)
            stop.wait(rng.uniform(0.0, 0.05))

    @contextmanager
    def running(self) -> Iterator[threading.Event]:
        stop = threading.Event()
        threads = [
            threading.Thread(target=self._loop, args=(n, stop), name=f"chaos-w{n}", daemon=True)
            for n in range(self.threads)
        ]
        for t in threads:
            t.start()
        try:
            yield stop
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=self.timeout * 3)


# -- the checker -------------------------------------------------------------------------


def _retry(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    """Call ``fn`` until it returns without raising (the nodes settle after the faults)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except Exception as err:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: {err!r}") from err
            time.sleep(0.5)


def _hex(b: Any) -> str:
    return "0x" + bytes(b).hex()


class ChainView:
    """The chain itself, read directly (not through any node or proxy)."""

    def __init__(self, url: str, deployment: Deployment) -> None:
        self.w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": 30}))
        self.d = deployment
        self.records = self.w3.eth.contract(
            address=deployment.record_registry, abi=load_artifact("RecordRegistry").abi
        )
        self.consents = self.w3.eth.contract(
            address=deployment.consent_registry, abi=load_artifact("ConsentRegistry").abi
        )
        self.access_log = self.w3.eth.contract(
            address=deployment.access_log, abi=load_artifact("AccessLog").abi
        )

    def head(self) -> int:
        return int(self.w3.eth.block_number)

    def anchors(self) -> Counter[str]:
        ev = self.records.events.RecordAnchored().get_logs(from_block=self.d.block_number)
        return Counter(_hex(e["args"]["recordId"]) for e in ev)

    def consent_events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for name in ("ConsentGranted", "ConsentRevoked"):
            for e in getattr(self.consents.events, name)().get_logs(from_block=self.d.block_number):
                out.append(
                    {
                        "event": name,
                        "block": e["blockNumber"],
                        "log": e["logIndex"],
                        **dict(e["args"]),
                    }
                )
        return sorted(out, key=lambda e: (e["block"], e["log"]))

    def break_glass_events(self) -> list[dict[str, Any]]:
        ev = self.consents.events.BreakGlassOpened().get_logs(from_block=self.d.block_number)
        return [dict(e["args"]) for e in ev]

    def consent_expiry(self, patient: str, grantee: str, category: str) -> int:
        return int(
            self.consents.functions.consentExpiry(
                patient, grantee, int(ScopeKind.CATEGORY), category_hash(category)
            ).call()
        )

    def audit_events(self, to_block: int) -> set[AuditKey]:
        """Every event an audit mirror holds, up to ``to_block``: the node's audit events
        (RecordAnchored, BatchAnchored, consents, break-glass, AccessRecorded) of the
        deployment's contracts."""
        wanted = {
            self.records: ("RecordAnchored", "BatchAnchored"),
            self.consents: (
                "ConsentGranted",
                "ConsentRevoked",
                "BreakGlassOpened",
                "ClassConsentGranted",
                "ClassConsentRevoked",
            ),
            self.access_log: ("AccessRecorded",),
        }
        keys: set[AuditKey] = set()
        for contract, names in wanted.items():
            for name in names:
                for e in getattr(contract.events, name)().get_logs(
                    from_block=self.d.block_number, to_block=to_block
                ):
                    keys.add(
                        _audit_key(
                            e["blockNumber"], e["logIndex"], name, e["transactionHash"], e["args"]
                        )
                    )
        return keys


@dataclass
class CheckReport:
    violations: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)

    def fail(self, text: str) -> None:
        self.violations.append(text)


def check(
    target: ChaosTarget,
    work: Workload,
    *,
    settle: float = 120.0,
    log: Callable[[str], None],
    mirrors: bool = True,
) -> CheckReport:
    """The invariants, with every fault healed. Waits (bounded by ``settle`` per wait) for
    what is asynchronous: anchoring, queued relays, the audit mirrors (``mirrors`` False:
    not checked)."""
    retry = min(30.0, settle)
    report = CheckReport(violations=list(work.ledger.violations))
    ledger = work.ledger
    chain = ChainView(target.chain_url(), target.deployment())
    n = target.size

    # 1. every acknowledged upload: anchored (the node says so), readable by its patient
    # with the same bytes, verified against its on-chain root
    t = time.monotonic()
    for up in ledger.uploads.values():
        hospital = work.client(up.hospital, work.staff[up.hospital].hospital_token)
        try:
            hospital.wait_anchored(up.record_id, timeout=settle)
        except Exception as err:
            report.fail(f"upload {up.record_id} (h{up.hospital}) not anchored: {err!r}")
            continue
    log(f"check: {len(ledger.uploads)} uploads anchored ({time.monotonic() - t:.1f}s)")

    def readable_and_verified(up: Upload) -> list[str]:
        bad: list[str] = []
        p = work.patient(up.patient)
        public = work.client(up.hospital)
        try:
            got = _retry(
                lambda: public.read(up.record_id, work.session(up.hospital, p.account)),
                retry,
                f"read {up.record_id}",
            )
            if got.content != up.content:
                bad.append(f"upload {up.record_id} reads back other bytes")
        except Exception as err:
            bad.append(f"upload {up.record_id} (h{up.hospital}) unreadable: {err!r}")
        auditor = work.client(up.hospital, work.staff[up.hospital].auditor_token)
        try:
            v = _retry(lambda: auditor.verify(up.record_id), retry, f"verify {up.record_id}")
            if not (v["verified"] and v["root_on_chain"] and v["proof_valid_on_chain"]):
                bad.append(f"upload {up.record_id} does not verify: {v}")
        except Exception as err:
            bad.append(f"upload {up.record_id} (h{up.hospital}) verify failed: {err!r}")
        return bad

    t = time.monotonic()
    with ThreadPoolExecutor(CHECK_THREADS) as pool:
        for bad in pool.map(readable_and_verified, list(ledger.uploads.values())):
            report.violations += bad
    log(f"check: uploads read and verified ({time.monotonic() - t:.1f}s)")

    # 2. anchored exactly once, on the chain itself
    anchors = chain.anchors()
    for rid in ledger.uploads:
        if anchors.get(rid, 0) != 1:
            report.fail(f"upload {rid} has {anchors.get(rid, 0)} RecordAnchored events")
    doubles = [rid for rid, c in anchors.items() if c > 1]
    if doubles:
        report.fail(f"records anchored more than once: {doubles}")
    report.facts.append(
        f"{len(anchors)} records anchored on-chain, {len(ledger.uploads)} acknowledged"
    )

    # 3. queued consents have left their queues; every acknowledged consent is on-chain
    for c in ledger.consents:
        if c.status != "queued" or c.relay_id is None:
            continue
        public = work.client(c.hospital)

        def relayed(c: Consent = c, public: EmrClient = public) -> dict[str, Any]:
            out = public.relay_status(int(c.relay_id))  # type: ignore[arg-type]
            if out["status"] == "queued":
                raise RuntimeError("still queued")
            return out

        try:
            out = _retry(relayed, settle, f"relay {c.relay_id} at h{c.hospital}")
            if out["status"] != "relayed":
                report.facts.append(f"queued {c.kind} relay {c.relay_id} at h{c.hospital}: {out}")
        except Exception as err:
            report.fail(f"queued {c.kind} relay {c.relay_id} at h{c.hospital}: {err!r}")
    events = chain.consent_events()
    granted = {
        (e["patient"], e["grantee"], _hex(e["scope"]), int(e["expiresAt"]))
        for e in events
        if e["event"] == "ConsentGranted"
    }
    revoked = Counter(
        (e["patient"], e["grantee"], _hex(e["scope"]))
        for e in events
        if e["event"] == "ConsentRevoked"
    )
    acked_revokes: Counter[tuple[str, str, str]] = Counter()
    for c in ledger.consents:
        scope = _hex(category_hash(c.category))
        if c.kind == "grant":
            if (c.patient, c.grantee, scope, c.expires_at) not in granted:
                report.fail(f"acknowledged grant not on-chain: {c}")
        else:
            acked_revokes[(c.patient, c.grantee, scope)] += 1
    for key, want in acked_revokes.items():
        if revoked.get(key, 0) < want:
            report.fail(f"acknowledged revokes {key}: {want}, on-chain {revoked.get(key, 0)}")

    # 4. the consent caches agree with the chain: a grantee whose consent is live on the
    # chain reads at the owning node, one whose consent ended is refused (a sample)
    def probe(up: Upload, s: Staff) -> str | None:
        expiry = chain.consent_expiry(up.patient, s.doctor.address, up.category)
        live = expiry > time.time()
        public = work.client(up.hospital)
        try:
            session = _retry(lambda: work.session(up.hospital, s.doctor), retry, "login")
            public.read(up.record_id, session)
            status = 200
        except ApiError as err:
            status = err.status
        except Exception as err:
            return f"consent probe {up.record_id}: {err!r}"
        if status != (200 if live else 403):
            return (
                f"{s.doctor.address} reading {up.record_id} at h{up.hospital}: {status}, "
                f"chain consent {'live' if live else 'none'} (expiry {expiry})"
            )
        return None

    # break-glass opened on the chain (acknowledged or not) is another basis: skip those
    broken = {(_hex(e["recordId"]), e["clinician"]) for e in chain.break_glass_events()}
    sample = list(ledger.uploads.values())[:: max(1, len(ledger.uploads) // 40)]
    pairs = [
        (up, s)
        for up in sample
        for s in work.staff
        if (up.record_id, s.doctor.address) not in broken
    ]
    t = time.monotonic()
    with ThreadPoolExecutor(CHECK_THREADS) as pool:
        found = list(pool.map(lambda a: probe(*a), pairs))
    report.violations += [f for f in found if f]
    report.facts.append(f"{len(pairs)} consent-cache probes ({time.monotonic() - t:.1f}s)")

    # 5. acknowledged break-glass on-chain
    opened = {
        (e["patient"], _hex(e["recordId"]), e["clinician"]) for e in chain.break_glass_events()
    }
    for b in ledger.break_glass:
        if (b.patient, b.record_id, b.clinician) not in opened:
            report.fail(f"acknowledged break-glass not on-chain: {b}")

    # 6. each node's audit mirror equals the chain: once it holds every event up to the
    # head, its events up to the head are the chain's, field by field (compared here with
    # the logs read directly); one node (by seed) also runs its own /audit/mirror/verify
    if not mirrors:
        return report
    t = time.monotonic()
    head = chain.head()
    on_chain = chain.audit_events(head)

    def mirror_matches(i: int) -> list[str]:
        auditor = work.client(i, work.staff[i].auditor_token)
        ti = time.monotonic()

        def caught_up() -> set[AuditKey]:
            mirrored = _mirror_events(auditor, head)
            if {k[:4] for k in on_chain} - {k[:4] for k in mirrored}:
                raise RuntimeError(f"h{i} mirror lacks events up to block {head}")
            return mirrored

        try:
            mirrored = _retry(caught_up, settle, f"h{i} audit mirror")
        except Exception as err:
            return [f"h{i} audit mirror did not catch up: {err!r}"]
        log(f"check: h{i} mirror caught up with block {head} ({time.monotonic() - ti:.1f}s)")
        if mirrored != on_chain:
            return [
                f"h{i} audit mirror (to block {head}): {len(mirrored)} events, chain "
                f"{len(on_chain)}; missing {sorted(on_chain - mirrored)[:3]}, "
                f"extra {sorted(mirrored - on_chain)[:3]}"
            ]
        return []

    with ThreadPoolExecutor(n) as pool:
        for bad in pool.map(mirror_matches, range(n)):
            report.violations += bad
    report.facts.append(f"every mirror = chain: {len(on_chain)} events to block {head}")
    own = work.seed % n
    try:  # slow: it decodes every event again (about 1 s per 100 here)
        with EmrClient(target.url(own), work.staff[own].auditor_token, timeout=180) as slow:
            v = slow.verify_mirror()
        cursor = int(v["cursor"])
        if v["missing"] or v["different"] or v["extra"] or cursor < head:
            report.fail(f"h{own} /audit/mirror/verify: {v}")
        report.facts.append(f"h{own} /audit/mirror/verify: {v['checked']} events to {cursor}")
    except Exception as err:
        report.fail(f"h{own} /audit/mirror/verify failed: {err!r}")
    log(f"check: audit mirrors ({time.monotonic() - t:.1f}s)")
    return report


AuditKey = tuple[int, int, str, str, tuple[tuple[str, Any], ...]]


def _norm(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, list | tuple):
        return tuple(_norm(v) for v in value)
    return value


def _audit_key(block: int, log_index: int, event: str, tx: Any, args: Any) -> AuditKey:
    return (
        int(block),
        int(log_index),
        str(event),
        _norm(tx),
        tuple(sorted((str(k), _norm(v)) for k, v in dict(args).items())),
    )


def _mirror_events(auditor: EmrClient, to_block: int) -> set[AuditKey]:
    keys: set[AuditKey] = set()
    offset = 0
    while True:
        page = auditor.audit_events(source="mirror", limit=1000, offset=offset)
        for e in page:
            if int(e["block_number"]) <= to_block:
                keys.add(
                    _audit_key(
                        e["block_number"], e["log_index"], e["event"], e["tx_hash"], e["args"]
                    )
                )
        if len(page) < 1000:
            return keys
        offset += 1000


# -- one run --------------------------------------------------------------------------------


@dataclass
class ChaosResult:
    seed: int
    seconds: float
    plan: list[Fault]
    ledger: Ledger
    faults: FaultLog
    report: CheckReport
    durations: dict[str, float]
    workload: Workload

    @property
    def ok(self) -> bool:
        return not (self.report.violations or self.faults.errors)

    def describe(self) -> str:
        lines = [
            f"chaos seed {self.seed} ({SEED_ENV}={self.seed} to replay), {self.seconds:.0f} s",
            *(f"  {f}" for f in self.plan),
            self.ledger.summary(),
            *self.report.facts,
            *(f"note: {n}" for n in self.ledger.notes),
            "durations: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.durations.items()),
        ]
        if self.faults.errors:
            lines += ["fault injector errors:", *(f"  {e}" for e in self.faults.errors)]
        if self.report.violations:
            lines += ["VIOLATIONS:", *(f"  {v}" for v in self.report.violations)]
        return "\n".join(lines)


def run_chaos(
    target: ChaosTarget,
    *,
    seed: int,
    seconds: float,
    log: Callable[[str], None] = print,
    threads: int = 4,
) -> ChaosResult:
    """Set up the actors, run the workload under the seeded faults for ``seconds``, heal,
    check. Never raises for a violation: see ``ChaosResult.ok``."""
    durations: dict[str, float] = {}
    plan = plan_faults(seed, seconds, target.size)
    log(f"chaos seed {seed} ({SEED_ENV}={seed} to replay): {len(plan)} faults in {seconds:.0f} s")
    for f in plan:
        log(f"  plan {f}")
    work = Workload(target, seed, threads=threads)
    t = time.monotonic()
    work.setup()
    durations["actors"] = time.monotonic() - t
    injector = FaultInjector(target, plan, log)
    t0 = work.t0 = time.monotonic()
    with work.running() as stop:
        injector.start(t0)
        stop.wait(seconds)
        # Heals take seconds (a restart) and push the plan back: on a slow machine, run on
        # (bounded) until every kind of fault happened once.
        first_deck = min(len(plan), len(FAULTS))
        deadline = time.monotonic() + 60
        while len(injector.record.done) < first_deck and time.monotonic() < deadline:
            time.sleep(0.2)
        injector.stop()
        injector.join(timeout=120)
    durations["chaos"] = time.monotonic() - t0
    log(work.ledger.summary())
    t = time.monotonic()
    target.revive()
    report = check(target, work, log=log)
    report.facts += target.notes
    durations["check"] = time.monotonic() - t
    work.close()
    return ChaosResult(seed, seconds, plan, work.ledger, injector.record, report, durations, work)


# -- the harness adapter ----------------------------------------------------------------


class HarnessTarget:
    """``ChaosTarget`` over tests/consortium/harness.py's ``Consortium``: faults are the
    hospitals' own processes, proxies and IPFS daemons. A process that exits on its own
    under a fault (a worker that cannot renew its lease without MySQL exits, as designed) is
    restarted when the fault heals, as a supervisor would, and noted in ``notes``."""

    def __init__(self, consortium: Any, log: Callable[[str], None] = print) -> None:
        self.consortium = consortium
        self.notes: list[str] = []
        self._log = log

    @property
    def size(self) -> int:
        return len(self.consortium.hospitals)

    def url(self, i: int) -> str:
        return str(self.consortium.hospitals[i].url)

    def admin_token(self, i: int) -> str:
        return str(self.consortium.hospitals[i].admin_token)

    def chain_url(self) -> str:
        return str(self.consortium.chain.url)

    def deployment(self) -> Deployment:
        first = self.consortium.hospitals[0]
        return Deployment.load(first.data_dir / "deployments" / "test.json")

    def _targets(self, hospital: int) -> list[Any]:
        hs = self.consortium.hospitals
        return list(hs) if hospital == ALL_HOSPITALS else [hs[hospital]]

    def inject(self, fault: str, hospital: int) -> None:
        for h in self._targets(hospital):
            if fault == "kill_api":
                h.kill_api()
            elif fault == "kill_worker":
                h.kill_worker()
            elif fault == "cut_mysql":
                h.mysql_proxy.cut()
            elif fault == "kill_ipfs":
                h.kill_ipfs()
            elif fault == "cut_chain":
                h.chain_proxy.cut()
            else:
                raise ValueError(f"unknown fault {fault!r}")

    def heal(self, fault: str, hospital: int) -> None:
        for h in self._targets(hospital):
            if fault == "cut_mysql":
                h.mysql_proxy.restore()
            elif fault == "kill_ipfs":
                h.start_ipfs()
            elif fault == "cut_chain":
                h.chain_proxy.restore()
        killed = {"kill_api": "api", "kill_worker": "worker"}.get(fault)
        self.revive({(h.index, killed) for h in self._targets(hospital)} if killed else set())

    def revive(self, killed: set[tuple[int, str]] | None = None) -> None:
        """Restart every hospital process that is not running; note the ones that exited
        on their own (not in ``killed``)."""
        killed = killed or set()
        for h in self.consortium.hospitals:
            for role, proc in (("worker", h.worker_proc), ("api", h.api_proc)):
                if proc is not None and proc.poll() is not None and (h.index, role) not in killed:
                    note = f"h{h.index} {role} had exited (code {proc.returncode}); restarted"
                    self.notes.append(note)
                    self._log(note)
            if not h.running:
                h.restart()
