"""A producer application for the relay fault tests (run as a script): in a loop, one
business transaction inserts a row into public.orders and records its audit event in
the same transaction; once the transaction committed, the event id goes to ACKED.

    outbox_producer.py APP_DSN ACKED
"""

from __future__ import annotations

import os
import sys
import time

import psycopg

from trailseal.client.outbox import record_in_transaction


def main() -> int:
    dsn, acked_path = sys.argv[1:3]
    acked = os.open(acked_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with psycopg.connect(dsn) as conn:
        while True:
            with conn.transaction():
                order = conn.execute("INSERT INTO public.orders (total) VALUES (42)"
                                     " RETURNING id").fetchone()
                assert order is not None
                event_id = record_in_transaction(conn, "order.created",
                                                 actor=("service", "shop"),
                                                 target=("order", str(order[0])))
            os.write(acked, (event_id + "\n").encode())
            time.sleep(0.002)


if __name__ == "__main__":
    sys.exit(main())
