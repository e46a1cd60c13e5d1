"""The node's state database on each backend, for the stores' tests: SQLite (a file in
tmp_path) and MySQL (the MariaDB on 127.0.0.1:3306 as root, a fresh database per test,
dropped afterwards; scripts/services.sh start).

A test module declares its own fixture over ``SQL_BACKENDS``::

    @pytest.fixture(params=SQL_BACKENDS)
    def dbs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlDatabases]:
        yield from sql_databases(request.param, tmp_path)
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from storage.sql import Dialect, MySQLDatabase, SqlDatabaseAPI, SQLiteDatabase, _mysql_sql

SQL_BACKENDS = ["sqlite", pytest.param("mysql", marks=pytest.mark.integration)]
MYSQL_SERVER: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 3306,
    "user": "root",
    "password": "",
}


def _admin(database: str | None = None) -> pymysql.connections.Connection[Any]:
    try:
        return pymysql.connect(**MYSQL_SERVER, database=database, autocommit=True)
    except pymysql.err.OperationalError as err:
        pytest.fail(f"MariaDB is not reachable as root on 127.0.0.1:3306 ({err})")


class SqlDatabases:
    """One database on one backend; ``connect`` opens another handle on it, as another
    process would (SQLite: the file's path, which the store opens; MySQL: a new pool)."""

    def __init__(self, dialect: Dialect, tmp_path: Path) -> None:
        self.dialect: Dialect = dialect
        self.path = tmp_path / "node.sqlite"
        self.name = f"emr_test_{secrets.token_hex(6)}"
        self._opened: list[SqlDatabaseAPI] = []

    def connect(self) -> Path | SqlDatabaseAPI:
        if self.dialect == "sqlite":
            return self.path
        return self.open()

    def open(self) -> SqlDatabaseAPI:
        """A database object the fixture closes (for stores sharing one)."""
        db: SqlDatabaseAPI
        if self.dialect == "sqlite":
            db = SQLiteDatabase(self.path)
        else:
            db = MySQLDatabase(
                **MYSQL_SERVER, database=self.name, pool_size=4, create_database_if_missing=True
            )
        self._opened.append(db)
        return db

    def raw(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run ``sql`` (``?`` placeholders) on a direct connection, behind the stores'
        back; raises the driver's own errors."""
        if self.dialect == "sqlite":
            conn = sqlite3.connect(self.path, isolation_level=None)
            try:
                return conn.execute(sql, params).fetchall()
            finally:
                conn.close()
        mysql = _admin(self.name)
        try:
            with mysql.cursor() as cur:
                cur.execute(_mysql_sql(sql), params)
                return list(cur.fetchall())
        finally:
            mysql.close()

    def close(self) -> None:
        for db in self._opened:
            db.close()
        if self.dialect == "mysql":
            conn = _admin()
            try:
                with conn.cursor() as cur:
                    cur.execute(f"DROP DATABASE IF EXISTS `{self.name}`")
            finally:
                conn.close()


def sql_databases(dialect: Dialect, tmp_path: Path) -> Iterator[SqlDatabases]:
    dbs = SqlDatabases(dialect, tmp_path)
    if dialect == "mysql":
        dbs.open()  # creates the database
    try:
        yield dbs
    finally:
        dbs.close()
