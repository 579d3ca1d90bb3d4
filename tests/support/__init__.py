"""Test support shared by the unit and integration tests and the benchmarks, one place each.

- :mod:`.waiting`: ``wait_until`` (the one polling helper) and ``stepping`` (the world
  moving in the background).
- :mod:`.fixtures`: recorded payloads under ``tests/fixtures``.
- :mod:`.loopback`: ``serve_app``, an aiohttp app on 127.0.0.1 for the duration of a block.
- :mod:`.procs`: ``polytape_env``, the environment of a ``polytape`` subprocess.
- :mod:`.stored_books`: reading stored order books back.
"""
