#!/usr/bin/env python3
"""Pages written and CPU per termination when random terminations are written in batches of 64
in arrival order (the store today) or in one transaction sorted by id (the fold of a log +
overlay design). The sessions UPDATE only: in that design the history row is the log's append.

    U=$(target/release/sessiond --database sqlite:/tmp/fold/f.db users add --login-name bench)
    target/release/examples/bulkload --database sqlite:/tmp/fold/f.db --user "$U" --seed del --count 400000
    target/release/sessiond --database sqlite:/tmp/fold/f.db migrate
    taskset -c 1 python3 bench/fold_locality.py /tmp/fold/f.db
"""
import os
import random
import shutil
import sqlite3
import sys
import time

SRC = sys.argv[1] if len(sys.argv) > 1 else "/tmp/fold/f.db"
WORK = os.path.join(os.path.dirname(SRC), "fold-work.db")
FRAME = 4096 + 24  # a WAL frame: the page and its header
UPDATE = "UPDATE sessions SET change_date = ?2, sequence = sequence + 1, terminated_at = ?2 WHERE id = ?1"

random.seed(7)
ids = [r[0] for r in sqlite3.connect(SRC).execute("SELECT id FROM sessions WHERE terminated_at IS NULL")]
print(f"{len(ids)} live sessions", flush=True)


def run(total, batch, order):
    for ext in ("", "-wal", "-shm"):
        if os.path.exists(WORK + ext):
            os.remove(WORK + ext)
    shutil.copy(SRC, WORK)
    c = sqlite3.connect(WORK, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "cache_size=-16384", "wal_autocheckpoint=0"):
        c.execute("PRAGMA " + pragma)
    pick = random.sample(ids, total)
    batches = [pick[i:i + batch] for i in range(0, total, batch)]
    if order == "sorted":
        batches = [sorted(b) for b in batches]
    start = time.process_time()
    for b in batches:
        c.execute("BEGIN IMMEDIATE")
        for i in b:
            c.execute(UPDATE, (i, 1_800_000_000_000_000))
        c.execute("COMMIT")
    cpu = time.process_time() - start
    frames = (os.path.getsize(WORK + "-wal") - 32) / FRAME
    print(f"{total} terminations in batches of {batch} ({order}): {frames / total:.2f} pages and "
          f"{cpu / total * 1e6:.1f} us CPU per termination (checkpoint not included)", flush=True)
    c.close()


for total, batch, order in [(20000, 64, "arrival"), (20000, 64, "sorted"), (20000, 1000, "sorted"),
                            (20000, 5000, "sorted"), (20000, 20000, "sorted"), (50000, 50000, "sorted"),
                            (100000, 100000, "sorted")]:
    run(total, batch, order)
for ext in ("", "-wal", "-shm"):
    if os.path.exists(WORK + ext):
        os.remove(WORK + ext)
