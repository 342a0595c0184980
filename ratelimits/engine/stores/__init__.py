"""Stores: one interface (`Store`) over Redis, memory and (in the Django app) the database."""

from .base import DatabaseStoreBase, StateTxn, Store, StoredReceipt, run_check, storage_key
from .memory import MemoryStore
from .redis import RedisStore

__all__ = [
    "DatabaseStoreBase",
    "MemoryStore",
    "RedisStore",
    "StateTxn",
    "Store",
    "StoredReceipt",
    "run_check",
    "storage_key",
]
