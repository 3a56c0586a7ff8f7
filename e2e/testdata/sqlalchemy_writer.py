"""A SQLAlchemy application with common pool settings: one INSERT every
100 ms for a bounded time over a multi-host libpq connection string; prints
"ok <unix time>" for each acknowledged write and "err <unix time> <error>"
for each failure, one line each, flushed."""
import sys
import time

import psycopg2
from sqlalchemy import create_engine, text

dsn, seconds = sys.argv[1], float(sys.argv[2])
engine = create_engine(
    "postgresql+psycopg2://",
    creator=lambda: psycopg2.connect(dsn),
    pool_pre_ping=True,   # validate on checkout
    pool_recycle=1800,
    pool_timeout=5,
)
end = time.time() + seconds
i = 0
while time.time() < end:
    i += 1
    try:
        with engine.begin() as c:
            c.execute(text("INSERT INTO sqla (id) VALUES (:id)"), {"id": i})
        print("ok %.3f" % time.time(), flush=True)
    except Exception as e:  # noqa: BLE001 - every failure is a client-visible error
        print("err %.3f %s" % (time.time(), str(e).splitlines()[0] if str(e) else type(e).__name__), flush=True)
    time.sleep(0.1)
