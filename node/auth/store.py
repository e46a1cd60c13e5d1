"""API tokens, SIWE challenges and wallet sessions, kept hashed in the node's state DB
(``node.sqlite``, or the index database on MySQL when API processes run on several hosts).

Tokens and sessions end: a token expires (``expires_at``, none for tokens made before
expiry existed and for the bootstrap admin token) or is revoked (``revoked_at``); a session
expires or is deleted at logout. Lookups are cached in this process for ``cache_ttl``
seconds, so a credential revoked through one API process fails on every other process
sharing the database within ``cache_ttl`` seconds (and at once on the process that
revoked it). Expiry is checked on every lookup, cached or not.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from node.auth.principal import Role, TokenPrincipal
from node.exceptions import Conflict, NotFound
from storage.exceptions import ConstraintViolation
from storage.sql import SqlDatabaseAPI, open_database

_MIGRATIONS = [
    """
    CREATE TABLE api_tokens (token_hash TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL,
                             created_at INTEGER NOT NULL);
    CREATE TABLE siwe_challenges (nonce TEXT PRIMARY KEY, address TEXT NOT NULL,
                                  message TEXT NOT NULL, expires_at INTEGER NOT NULL);
    CREATE TABLE sessions (token_hash TEXT PRIMARY KEY, address TEXT NOT NULL,
                           expires_at INTEGER NOT NULL)
    """,
    # Tokens that end: a public id (tokens made before get a random one), an optional
    # expiry (none for tokens made before: they live until revoked) and a revocation time.
    """
    ALTER TABLE api_tokens ADD COLUMN id TEXT;
    ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER;
    ALTER TABLE api_tokens ADD COLUMN revoked_at INTEGER;
    UPDATE api_tokens SET id = lower(hex(randomblob(6))) WHERE id IS NULL;
    CREATE UNIQUE INDEX api_tokens_id ON api_tokens (id);
    CREATE INDEX sessions_address ON sessions (address)
    """,
    # Each wallet's latest successful sign-in, so the next one can tell it "last time".
    "CREATE TABLE sign_ins (address TEXT PRIMARY KEY, last_at INTEGER NOT NULL)",
]
# The same schema on MySQL (one version: it starts where SQLite is now). ``seq`` orders
# tokens made in the same second (SQLite's rowid).
_TABLE = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
_MYSQL_MIGRATIONS = [
    f"""
    CREATE TABLE IF NOT EXISTS api_tokens (token_hash CHAR(64) NOT NULL PRIMARY KEY,
        seq BIGINT NOT NULL AUTO_INCREMENT UNIQUE, name VARCHAR(255) NOT NULL,
        role VARCHAR(32) NOT NULL, created_at BIGINT NOT NULL, id CHAR(12) NOT NULL UNIQUE,
        expires_at BIGINT NULL, revoked_at BIGINT NULL) {_TABLE};
    CREATE TABLE IF NOT EXISTS siwe_challenges (nonce VARCHAR(128) NOT NULL PRIMARY KEY,
        address VARCHAR(64) NOT NULL, message TEXT NOT NULL, expires_at BIGINT NOT NULL,
        KEY siwe_challenges_expiry (expires_at)) {_TABLE};
    CREATE TABLE IF NOT EXISTS sessions (token_hash CHAR(64) NOT NULL PRIMARY KEY,
        address VARCHAR(64) NOT NULL, expires_at BIGINT NOT NULL,
        KEY sessions_address (address), KEY sessions_expiry (expires_at)) {_TABLE}
    """,
    f"""
    CREATE TABLE IF NOT EXISTS sign_ins (address VARCHAR(64) NOT NULL PRIMARY KEY,
        last_at BIGINT NOT NULL) {_TABLE}
    """,
]

TOKEN_ID_PATTERN = r"^[0-9a-f]{12}$"  # 48 random bits, shown in lists and logs
DEFAULT_CACHE_TTL = 2.0
DEFAULT_CACHE_SIZE = 10_000


def _digest(token: str) -> str:
    # Tokens are 256-bit random: a plain hash is enough to make a leaked table useless.
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """An API token as an admin sees it: never the token or its hash."""

    id: str
    name: str
    role: Role
    created_at: int
    expires_at: int | None  # unix seconds; None: until revoked
    revoked_at: int | None

    def live(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new API token: ``token`` is shown once, the node keeps only its hash."""

    id: str
    token: str
    expires_at: int | None


V = TypeVar("V")


class _TTLCache(Generic[V]):
    """At most ``max_size`` entries, each served for ``ttl`` seconds after it was fetched;
    the least recently used go first. Thread-safe."""

    def __init__(self, ttl: float, max_size: int, clock: Callable[[], float]) -> None:
        self._ttl = ttl
        self._max_size = max_size
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def get(self, key: str) -> V | None:
        if self._ttl <= 0:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if self._clock() - entry[0] >= self._ttl:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: str, value: V, fetched_at: float) -> None:
        if self._ttl <= 0:
            return
        with self._lock:
            self._entries[key] = (fetched_at, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_size:
                self._entries.popitem(last=False)

    def discard(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class AuthStore:
    """Credentials in the node's state DB, shared by every API process using it.

    Args:
        db: the state database (SQLite or MySQL), or the path of an SQLite file that the
            store opens and closes itself.
        cache_ttl: seconds a looked-up token or session is served from this process's
            memory: the bound after which a revocation made elsewhere is seen here (0: no
            cache, every lookup queries the database).
        cache_size: most credentials cached (least recently used dropped first).
        clock: monotonic clock for the cache (tests).
    """

    def __init__(
        self,
        db: Path | SqlDatabaseAPI,
        *,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        cache_size: int = DEFAULT_CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db, self._owns_db = open_database(db)
        self._db.migrate("auth", _MIGRATIONS if self._db.dialect == "sqlite" else _MYSQL_MIGRATIONS)
        self._clock = clock
        self.cache_ttl = cache_ttl
        # Only found credentials are cached (with their own expiry): a lookup that finds
        # nothing always asks the database, so a new token works at once everywhere.
        self._tokens: _TTLCache[tuple[TokenPrincipal, int | None]] = _TTLCache(
            cache_ttl, cache_size, clock
        )
        self._sessions: _TTLCache[tuple[str, int]] = _TTLCache(cache_ttl, cache_size, clock)

    # -- API tokens ------------------------------------------------------------------------
    def issue_token(self, name: str, role: Role, *, ttl: int | None = None) -> IssuedToken:
        """Create a token valid for ``ttl`` seconds (None: until revoked)."""
        if ttl is not None and ttl < 1:
            raise ValueError("ttl must be at least one second")
        token = "emr_" + secrets.token_urlsafe(32)
        now = time.time()
        expires_at = None if ttl is None else math.ceil(now + ttl)  # at least ttl seconds
        for _ in range(5):  # 48-bit ids: a clash is rare, retried with a new id
            token_id = secrets.token_hex(6)
            try:
                with self._db.transaction() as cur:
                    cur.execute(
                        "INSERT INTO api_tokens (token_hash, name, role, created_at, id,"
                        " expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, NULL)",
                        (_digest(token), name, role.value, int(now), token_id, expires_at),
                    )
            except ConstraintViolation:
                continue
            return IssuedToken(token_id, token, expires_at)
        raise RuntimeError("could not draw a free token id")

    def create_token(self, name: str, role: Role, *, ttl: int | None = None) -> str:
        """Create a token valid for ``ttl`` seconds (None: until revoked); return it."""
        return self.issue_token(name, role, ttl=ttl).token

    def has_tokens(self) -> bool:
        return bool(self._db.query("SELECT 1 FROM api_tokens LIMIT 1"))

    def has_live_admin(self) -> bool:
        """Whether some admin token is neither revoked nor expired."""
        return bool(
            self._db.query(
                "SELECT 1 FROM api_tokens WHERE role = ? AND revoked_at IS NULL"
                " AND (expires_at IS NULL OR expires_at > ?) LIMIT 1",
                (Role.ADMIN.value, int(time.time())),
            )
        )

    def resolve_token(self, token: str) -> TokenPrincipal | None:
        """The token's principal; None if it is unknown, expired or revoked."""
        digest = _digest(token)
        cached = self._tokens.get(digest)
        if cached is None:
            fetched_at = self._clock()
            rows = self._db.query(
                "SELECT id, name, role, expires_at FROM api_tokens"
                " WHERE token_hash = ? AND revoked_at IS NULL",
                (digest,),
            )
            if not rows:
                return None
            token_id, name, role, expires_at = rows[0]
            cached = (TokenPrincipal(name, Role(role), token_id), expires_at)
            self._tokens.put(digest, cached, fetched_at)
        principal, expires_at = cached
        if expires_at is not None and time.time() >= expires_at:
            return None
        return principal

    def peek_token(self, token: str) -> tuple[bool, TokenPrincipal | None]:
        """(found in this process's cache, its principal or None if expired), without
        touching the database: the event loop may ask this, never ``resolve_token``."""
        cached = self._tokens.get(_digest(token))
        if cached is None:
            return False, None
        principal, expires_at = cached
        return True, None if expires_at is not None and time.time() >= expires_at else principal

    def list_tokens(self) -> list[TokenInfo]:
        """Every token, revoked and expired ones too, oldest first."""
        tiebreak = "rowid" if self._db.dialect == "sqlite" else "seq"
        rows = self._db.query(
            "SELECT id, name, role, created_at, expires_at, revoked_at FROM api_tokens"
            f" ORDER BY created_at, {tiebreak}"
        )
        return [TokenInfo(r[0], r[1], Role(r[2]), r[3], r[4], r[5]) for r in rows]

    def revoke_token(self, token_id: str, *, force: bool = False) -> TokenInfo:
        """Revoke a token by its id and return it as revoked.

        Raises NotFound for an unknown id, and Conflict if it is already revoked or if it is
        the last live admin token and ``force`` is false (nobody could manage tokens any
        more; a restart would then write a new bootstrap admin token).
        """
        now = int(time.time())
        # Locked: two admins revoking the last two admin tokens at once cannot both pass.
        with self._db.transaction(lock="api_tokens") as cur:
            row = cur.execute(
                "SELECT id, name, role, created_at, expires_at, revoked_at FROM api_tokens"
                " WHERE id = ?",
                (token_id,),
            ).fetchone()
            if row is None:
                raise NotFound(f"no API token with id {token_id}")
            info = TokenInfo(row[0], row[1], Role(row[2]), row[3], row[4], row[5])
            if info.revoked_at is not None:
                raise Conflict(f"API token {token_id} was already revoked")
            if info.role is Role.ADMIN and info.live(now) and not force:
                others = cur.execute(
                    "SELECT COUNT(*) FROM api_tokens WHERE role = ? AND id != ?"
                    " AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)",
                    (Role.ADMIN.value, token_id, now),
                ).fetchone()[0]
                if not others:
                    raise Conflict(
                        f"API token {token_id} is the last live admin token: create another "
                        "admin token first, or revoke with force"
                    )
            cur.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ?", (now, token_id))
        self._tokens.clear()  # this process refuses it at once; others within cache_ttl
        return TokenInfo(
            info.id, info.name, info.role, info.created_at, info.expires_at, revoked_at=now
        )

    # -- SIWE challenges -------------------------------------------------------------------
    def add_challenge(self, nonce: str, address: str, message: str, expires_at: int) -> None:
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM siwe_challenges WHERE expires_at < ?", (int(time.time()),))
            cur.execute(
                "INSERT INTO siwe_challenges (nonce, address, message, expires_at)"
                " VALUES (?, ?, ?, ?)",
                (nonce, address, message, expires_at),
            )

    def take_challenge(self, nonce: str) -> tuple[str, str, int] | None:
        """Remove and return (address, message, expires_at): a nonce signs in once."""
        with self._db.transaction() as cur:
            row = cur.execute(
                "SELECT address, message, expires_at FROM siwe_challenges WHERE nonce = ?"
                + self._db.for_update(),
                (nonce,),
            ).fetchone()
            if row is None:
                return None
            # Another process taking the same nonce at once finds it gone.
            if not cur.execute("DELETE FROM siwe_challenges WHERE nonce = ?", (nonce,)).rowcount:
                return None
            return str(row[0]), str(row[1]), int(row[2])

    # -- wallet sessions -------------------------------------------------------------------
    def create_session(self, address: str, ttl: int) -> tuple[str, int]:
        token = "emrs_" + secrets.token_urlsafe(32)
        expires_at = int(time.time()) + ttl
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM sessions WHERE expires_at < ?", (int(time.time()),))
            cur.execute(
                "INSERT INTO sessions (token_hash, address, expires_at) VALUES (?, ?, ?)",
                (_digest(token), address, expires_at),
            )
        return token, expires_at

    def record_sign_in(self, address: str, at: int | None = None) -> int | None:
        """Note a successful sign-in of ``address`` at ``at`` (default now); return the
        previous one (unix seconds), or None if this is its first on this node."""
        now = int(time.time()) if at is None else at
        with self._db.transaction() as cur:
            row = cur.execute(
                "SELECT last_at FROM sign_ins WHERE address = ?" + self._db.for_update(),
                (address,),
            ).fetchone()
            cur.execute(
                self._db.upsert("sign_ins", ("address", "last_at"), "address", ("last_at",)),
                (address, now),
            )
        return None if row is None else int(row[0])

    def resolve_session(self, token: str) -> str | None:
        """The session's wallet address; None if it is unknown, expired or ended."""
        digest = _digest(token)
        cached = self._sessions.get(digest)
        if cached is None:
            fetched_at = self._clock()
            rows = self._db.query(
                "SELECT address, expires_at FROM sessions WHERE token_hash = ?", (digest,)
            )
            if not rows:
                return None
            cached = (rows[0][0], rows[0][1])
            self._sessions.put(digest, cached, fetched_at)
        address, expires_at = cached
        return address if time.time() <= expires_at else None

    def peek_session(self, token: str) -> tuple[bool, str | None]:
        """``peek_token`` for wallet sessions: (cached, address or None if expired)."""
        cached = self._sessions.get(_digest(token))
        if cached is None:
            return False, None
        address, expires_at = cached
        return True, address if time.time() <= expires_at else None

    def end_session(self, token: str) -> bool:
        """Log a session out; False if there was no such session."""
        digest = _digest(token)
        with self._db.transaction() as cur:
            ended = cur.execute("DELETE FROM sessions WHERE token_hash = ?", (digest,)).rowcount
        self._sessions.discard(digest)
        return bool(ended)

    def revoke_sessions(self, address: str) -> int:
        """Log every session of ``address`` out; return how many there were."""
        with self._db.transaction() as cur:
            ended = cur.execute("DELETE FROM sessions WHERE address = ?", (address,)).rowcount
        self._sessions.clear()
        return int(ended)

    def close(self) -> None:
        """Close the database if this store opened it (from a path)."""
        if self._owns_db:
            self._db.close()
