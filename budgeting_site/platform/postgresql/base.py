"""Django's PostgreSQL backend with a health check that costs no round trip when nothing
happened to the connection, and the JIT compiler off for its sessions.

With `CONN_HEALTH_CHECKS`, Django asks a persistent connection `SELECT 1` before the first
query of every request: a round trip, and PostgreSQL's CPU, on every API call. A connection
the server has ended (a terminated backend, a restart, an idle timeout) has something to read
on its socket: the server's error message, or end of file. So the socket is polled first, without
waiting; only when it has something to read is the connection asked `SELECT 1` as before (a
stray notice is read and the connection kept; a dead one is replaced, as Django always did).

JIT: PostgreSQL compiles a query to machine code once its estimated cost passes
`jit_above_cost`, which every report over a month of rollups does; the compilation (10-100 ms
on this project's machines) costs more than it saves on queries that run for tens of
milliseconds. With it off, the 30-day reports over 10 M records take about half as long
(bench/RESULTS.md, "Reports"). Set per session (`SET`, once per new connection) rather than
as a startup option, which connection poolers may refuse.
"""

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def init_connection_state(self) -> None:
        super().init_connection_state()
        with self.connection.cursor() as cursor:
            cursor.execute("SET jit = off")

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
