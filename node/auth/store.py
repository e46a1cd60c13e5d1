"""API tokens, SIWE challenges and wallet sessions, kept hashed in the node's state DB."""

from __future__ import annotations

import hashlib
import secrets
import time
from pathlib import Path

from node.auth.principal import Role, TokenPrincipal
from node.sqlite_db import SQLiteDatabase

_MIGRATIONS = [
    """
    CREATE TABLE api_tokens (token_hash TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL,
                             created_at INTEGER NOT NULL);
    CREATE TABLE siwe_challenges (nonce TEXT PRIMARY KEY, address TEXT NOT NULL,
                                  message TEXT NOT NULL, expires_at INTEGER NOT NULL);
    CREATE TABLE sessions (token_hash TEXT PRIMARY KEY, address TEXT NOT NULL,
                           expires_at INTEGER NOT NULL)
    """,
]


def _digest(token: str) -> str:
    # Tokens are 256-bit random: a plain hash is enough to make a leaked table useless.
    return hashlib.sha256(token.encode()).hexdigest()


class AuthStore:
    def __init__(self, path: Path) -> None:
        self._db = SQLiteDatabase(path, "auth", _MIGRATIONS)

    def create_token(self, name: str, role: Role) -> str:
        token = "emr_" + secrets.token_urlsafe(32)
        with self._db.transaction() as cur:
            cur.execute(
                "INSERT INTO api_tokens VALUES (?, ?, ?, ?)",
                (_digest(token), name, role.value, int(time.time())),
            )
        return token

    def has_tokens(self) -> bool:
        return bool(self._db.query("SELECT 1 FROM api_tokens LIMIT 1"))

    def resolve_token(self, token: str) -> TokenPrincipal | None:
        rows = self._db.query(
            "SELECT name, role FROM api_tokens WHERE token_hash = ?", (_digest(token),)
        )
        return TokenPrincipal(rows[0][0], Role(rows[0][1])) if rows else None

    def add_challenge(self, nonce: str, address: str, message: str, expires_at: int) -> None:
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM siwe_challenges WHERE expires_at < ?", (int(time.time()),))
            cur.execute(
                "INSERT INTO siwe_challenges VALUES (?, ?, ?, ?)",
                (nonce, address, message, expires_at),
            )

    def take_challenge(self, nonce: str) -> tuple[str, str, int] | None:
        """Remove and return (address, message, expires_at): a nonce signs in once."""
        with self._db.transaction() as cur:
            row = cur.execute(
                "SELECT address, message, expires_at FROM siwe_challenges WHERE nonce = ?",
                (nonce,),
            ).fetchone()
            if row is None:
                return None
            cur.execute("DELETE FROM siwe_challenges WHERE nonce = ?", (nonce,))
            return row[0], row[1], row[2]

    def create_session(self, address: str, ttl: int) -> tuple[str, int]:
        token = "emrs_" + secrets.token_urlsafe(32)
        expires_at = int(time.time()) + ttl
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM sessions WHERE expires_at < ?", (int(time.time()),))
            cur.execute(
                "INSERT INTO sessions VALUES (?, ?, ?)", (_digest(token), address, expires_at)
            )
        return token, expires_at

    def resolve_session(self, token: str) -> str | None:
        rows = self._db.query(
            "SELECT address FROM sessions WHERE token_hash = ? AND expires_at >= ?",
            (_digest(token), int(time.time())),
        )
        return rows[0][0] if rows else None

    def close(self) -> None:
        self._db.close()
