"""Stores behind one interface: in memory and (for the daemon) SQLite."""

from mvds.store.base import Store, StoredMessage
from mvds.store.memory import MemoryStore

__all__ = ["MemoryStore", "Store", "StoredMessage"]
