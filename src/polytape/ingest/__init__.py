"""The client → normalizer → store steps that jobs and backfills share.

- :mod:`.gamma`: walk Gamma events pages (:class:`~polytape.paging.GammaCursor`), and
  normalize + write one page in one transaction.
- :mod:`.trades`: walk ``/trades`` and ``/v2/trades`` pages (the pagers of
  :mod:`polytape.paging`), asking again for an answer that is not JSON; log rejects.

Imports: clients, normalize, paging, runtime, store. Never jobs, backfill, app or cli.
"""
