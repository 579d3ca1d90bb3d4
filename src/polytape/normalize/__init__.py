"""Pure functions from raw API payloads to typed records: no I/O, no clock reads."""
