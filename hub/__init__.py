"""hub: the trustplane verification service.

Entry points: :func:`hub.app.create_app` (the aiohttp application), :mod:`hub.cli`
(``trustplane-hub``). The report path: :mod:`hub.attestation` (endpoints, verdicts, staleness)
-> :mod:`hub.verification` (the ordered checks, calling trustcore) -> :mod:`hub.flavors`.
Enrollment: :mod:`hub.enrollment` with :mod:`hub.pki`. State: :mod:`hub.store` (the only
SQLite user), :mod:`hub.statedir` (keys and certificates), :mod:`hub.state` (app keys, event
bus). HTTP boundary: :mod:`hub.auth`, :mod:`hub.errors`, :mod:`hub.server`.
"""
