"""Storage: schema, migrations and every write. The only package that knows SQL.

Every write takes a :class:`Tx` (one transaction per page or flush, idempotent by key);
reads return plain dicts. Imports: errors, normalize and books (record types); never
http, clients, jobs or anything above.
"""

from polytape.store.core import Store, Tx
from polytape.store.schema import metadata

__all__ = ["Store", "Tx", "metadata"]
