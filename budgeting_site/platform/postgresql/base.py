"""Django's PostgreSQL backend with a health check that costs no round trip when nothing
happened to the connection.

With `CONN_HEALTH_CHECKS`, Django asks a persistent connection `SELECT 1` before the first
query of every request: a round trip, and PostgreSQL's CPU, on every API call. A connection
the server has ended (a terminated backend, a restart, an idle timeout) has something to read
on its socket: the server's error message, or end of file. So the socket is polled first, without
waiting; only when it has something to read is the connection asked `SELECT 1` as before (a
stray notice is read and the connection kept; a dead one is replaced, as Django always did).
"""

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        try:
            readable, _, _ = select.select([connection.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        if not readable:
            return True
        return super().is_usable()
