"""Moved to ``storage.sql`` (issue 11); kept so existing imports keep working."""

from __future__ import annotations

from storage.sql import SQLiteDatabase

__all__ = ["SQLiteDatabase"]
