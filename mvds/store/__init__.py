"""Stores behind one interface: in memory and (for the daemon) SQLite."""

from mvds.store.base import Store, StoredMessage
from mvds.store.errors import SchemaTooNew, StoreError
from mvds.store.memory import MemoryStore
from mvds.store.sqlite import SQLiteReader, SQLiteStore

__all__ = [
    "MemoryStore",
    "SQLiteReader",
    "SQLiteStore",
    "SchemaTooNew",
    "Store",
    "StoreError",
    "StoredMessage",
]
