#!/usr/bin/env python3
"""Large ListSessions pages against everything else: how long a GetSession of another session and
the readiness probe take while callers read pages of 1,000 sessions with full metadata (4 values
of 8 KB: about 43 MB of JSON per page, as the limits allow).

    bench/large_pages.py BIN [BIN ...]      # each a directory holding a release `sessiond`

For each binary, alternated round by round: a fresh database with SESSIONS fat sessions; then
GETS GetSessions one after another alone, and again for SECS seconds while LISTERS threads each
read pages over REST back to back (the server on core 0, this script on core 1). Prints one line per binary and
round: GetSession p50 / p99 / max alone and under the pages, /readyz answers other than 200,
pages read, and the CreateSessions that WRITERS threads made meanwhile with the WAL file's peak
size (it must still start over while pages are read). Knobs: BENCH_SESSIONS (1000),
BENCH_LISTERS (4), BENCH_GETS (300), BENCH_SECS (10), BENCH_WRITERS (2), BENCH_ROUNDS (2), BENCH_PORT (7900).
"""

import base64
import concurrent.futures as cf
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

SESSIONS = int(os.environ.get("BENCH_SESSIONS", 1000))
LISTERS = int(os.environ.get("BENCH_LISTERS", 4))
GETS = int(os.environ.get("BENCH_GETS", 300))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 2))
WRITERS = int(os.environ.get("BENCH_WRITERS", 2))
SECONDS = float(os.environ.get("BENCH_SECS", 10))
PORT = int(os.environ.get("BENCH_PORT", 7900))


def request(conn, method, path, token, body=None):
    headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    response = conn.getresponse()
    data = response.read()
    return response.status, data


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def gets(port, token, session_id, count, seconds=None):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    took = []
    until = time.perf_counter() + seconds if seconds else None
    while (len(took) < count) if until is None else (time.perf_counter() < until):
        started = time.perf_counter()
        status, _ = request(conn, "GET", f"/v2/sessions/{session_id}", token)
        took.append((time.perf_counter() - started) * 1000)
        assert status == 200, status
    return took


def run(bin_dir, round_no):
    work = tempfile.mkdtemp(prefix="large-pages-")
    env = dict(os.environ, SESSIOND_DATABASE=f"sqlite:{work}/db", RUST_LOG="warn")
    sessiond = os.path.join(bin_dir, "sessiond")
    cli = lambda *args: subprocess.run([sessiond, *args], env=env, check=True, capture_output=True, text=True).stdout.strip()
    user = cli("users", "add", "--login-name", "fat")
    token = cli("tokens", "add", "--user", user, "--permission", "session.read", "--permission", "session.write")
    port = PORT + round_no
    server = subprocess.Popen(
        ["taskset", "-c", "0", sessiond, "serve", "--listen", f"127.0.0.1:{port}", "--metrics-listen", "none"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                http.client.HTTPConnection("127.0.0.1", port).request("GET", "/healthz")
                break
            except OSError:
                time.sleep(0.1)
        value = base64.b64encode(b"m" * (8 * 1024 - 40)).decode()
        fat = {"checks": {"user": {"userId": user}}, "metadata": {k: value for k in "abcd"}}

        def create(body):
            conn = http.client.HTTPConnection("127.0.0.1", port)
            status, data = request(conn, "POST", "/v2/sessions", token, body)
            assert status == 201, (status, data[:200])
            return json.loads(data)["sessionId"]

        with cf.ThreadPoolExecutor(8) as pool:
            list(pool.map(create, [fat] * SESSIONS))
        other = create({})
        alone = gets(port, token, other, GETS)

        stop = threading.Event()
        pages = [0]

        def lister():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            page = {"query": {"limit": 1000}, "queries": [{"userIdQuery": {"id": user}}]}
            while not stop.is_set():
                status, data = request(conn, "POST", "/v2/sessions/search", token, page)
                assert status == 200, status
                pages[0] += 1

        threads = [threading.Thread(target=lister) for _ in range(LISTERS)]
        for t in threads:
            t.start()
        time.sleep(1)
        not_ready = [0]
        probe_conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

        def probe():
            while not stop.is_set():
                probe_conn.request("GET", "/readyz")
                response = probe_conn.getresponse()
                response.read()
                not_ready[0] += response.status != 200
                time.sleep(0.2)

        wal_peak = [0]
        created = [0]

        def writer():
            # Small writes meanwhile: the WAL must still start over while pages are read.
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            while not stop.is_set():
                status, _ = request(conn, "POST", "/v2/sessions", token, {})
                assert status == 201, status
                created[0] += 1
                try:
                    wal_peak[0] = max(wal_peak[0], os.path.getsize(f"{work}/db-wal"))
                except OSError:
                    pass

        prober = threading.Thread(target=probe)
        prober.start()
        writers = [threading.Thread(target=writer) for _ in range(WRITERS)]
        for t in writers:
            t.start()
        started = time.perf_counter()
        loaded = gets(port, token, other, GETS, SECONDS)
        elapsed = time.perf_counter() - started
        stop.set()
        for t in threads + [prober] + writers:
            t.join()
        fmt = lambda xs: f"{percentile(xs, 0.5):7.1f} {percentile(xs, 0.99):7.1f} {max(xs):7.1f}"
        print(f"{bin_dir:40} round {round_no}  alone p50/p99/max ms {fmt(alone)}   "
              f"under {LISTERS} listers {fmt(loaded)}   readyz not 200: {not_ready[0]}   "
              f"pages: {pages[0]} in {elapsed:.1f} s   creates meanwhile: {created[0]}, WAL peak {wal_peak[0] / 2**20:.1f} MiB",
              flush=True)
    finally:
        server.terminate()
        server.wait()
        subprocess.run(["rm", "-rf", work])


def main():
    bins = sys.argv[1:]
    if not bins:
        sys.exit(__doc__)
    os.sched_setaffinity(0, {1})
    for round_no in range(ROUNDS):
        for i, bin_dir in enumerate(bins):
            run(bin_dir, round_no * len(bins) + i)


if __name__ == "__main__":
    main()
