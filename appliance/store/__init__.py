"""The appliance's SQLite store: one file, durable writes, versioned schema."""

from appliance.store.db import open_store

__all__ = ["open_store"]
