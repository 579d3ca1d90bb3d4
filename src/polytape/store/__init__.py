"""Storage: schema, migrations and every write. The only package that knows SQL."""

from polytape.store.core import Store, Tx
from polytape.store.schema import metadata

__all__ = ["Store", "Tx", "metadata"]
