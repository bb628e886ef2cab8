"""trustcore: the pure logic shared by the node agent and the hub.

Nothing in this package performs I/O: no files, sockets, clocks, randomness or environment
reads. Time, random bytes and nonces are parameters. The import contract in ``setup.cfg``
(checked by ``make check`` and by the tests) keeps it that way.
"""

__version__ = "0.1.0"
