"""What Python clients see of a `contextdb serve`: the Debian graph loaded through ADBC's
`adbc_ingest` against `COPY` of the same Parquet files, and round trips of `SELECT 1` and a
point query, in one run on one machine.

    target/clients/venv/bin/python benches/scripts/clients.py target/release/contextdb [ROUNDS]

(`tests/clients/run` installs the venv.) Each round loads the graph twice, each time into a
fresh server on a fresh data directory: once with `COPY` statements (the server reads the
files), once with `adbc_ingest` (this process reads the files and streams Arrow batches).
Times are wall-clock medians over the rounds; the ratio is ingest over COPY.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "../.."))
# The client suite's Debian tables and its adbc_ingest with ContextDB's table options.
sys.path.insert(0, os.path.join(ROOT, "tests/clients/python"))
from test_clients import DEBIAN, DEBIAN_EDGES as EDGES, DEBIAN_NODES as NODES, ingest  # noqa: E402

DEBIAN = os.path.abspath(DEBIAN)

ROUND_TRIPS = int(os.environ.get("ROUND_TRIPS", "300"))


class Server:
    def __init__(self, binary, data_dir):
        self.process = subprocess.Popen(
            [binary, "serve", "--data-dir", data_dir, "--flight-addr", "127.0.0.1:0",
             "--http-addr", "127.0.0.1:0", "--file-root", DEBIAN],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        line = [None]
        reader = threading.Thread(target=lambda: line.__setitem__(0, self.process.stdout.readline()))
        reader.start()
        reader.join(120)
        words = (line[0] or "").split()
        if words[:3] != ["contextdb", "serve:", "flight"]:
            self.process.kill()
            raise RuntimeError(f"the server did not start: {line[0]!r}")
        self.uri = words[3]

    def connect(self):
        return flight_sql.connect(uri=self.uri, autocommit=True)

    def stop(self):
        self.process.terminate()
        self.process.wait(60)


def load_with_copy(server):
    script = open(os.path.join(ROOT, "tests/debian/load.cql")).read().replace("__DATA__", DEBIAN)
    # The script's comments are whole lines; its statements hold no `;` of their own.
    script = "\n".join(l for l in script.splitlines() if not l.lstrip().startswith("//"))
    statements = [s.strip() for s in script.split(";")]
    with server.connect() as conn, conn.cursor() as cur:
        start = time.perf_counter()
        for statement in statements:
            if statement:
                cur.execute(statement)
        return time.perf_counter() - start


def load_with_ingest(server):
    with server.connect() as conn:
        start = time.perf_counter()
        read = 0.0
        rows = 0
        for label, file in list(NODES.items()) + [(r, f) for r, (f, _, _) in EDGES.items()]:
            t = time.perf_counter()
            table = pq.read_table(os.path.join(DEBIAN, file + ".parquet"))
            read += time.perf_counter() - t
            rows += table.num_rows
            if label in NODES:
                ingest(conn, label, table, "create", kind="node", primary_key="id")
            else:
                _, source, target = EDGES[label]
                ingest(conn, label, table, "create", kind="edge", **{"from": source, "to": target})
        return time.perf_counter() - start, read, rows


def round_trips(server, text, parameters=None):
    with server.connect() as conn, conn.cursor() as cur:
        for _ in range(20):
            cur.execute(text, parameters=parameters)
            cur.fetchall()
        times = []
        for _ in range(ROUND_TRIPS):
            start = time.perf_counter()
            cur.execute(text, parameters=parameters)
            cur.fetchall()
            times.append(time.perf_counter() - start)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def main():
    binary = os.path.abspath(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    copies, ingests, reads = [], [], []
    rows = 0
    latency = {}
    for r in range(rounds):
        with tempfile.TemporaryDirectory() as work:
            server = Server(binary, os.path.join(work, "copy"))
            try:
                copies.append(load_with_copy(server))
                if r == rounds - 1:
                    latency["SELECT 1"] = round_trips(server, "SELECT 1")
                    latency["point query (ContextQL, $1 bound)"] = round_trips(
                        server, "MATCH (p:Package {name: $1}) RETURN p.version", ("libssl3",)
                    )
                    latency["point query (SQL, $1 bound)"] = round_trips(
                        server, "SELECT version FROM Package WHERE name = $1", ("libssl3",)
                    )
            finally:
                server.stop()
            server = Server(binary, os.path.join(work, "ingest"))
            try:
                total, read, rows = load_with_ingest(server)
                ingests.append(total)
                reads.append(read)
            finally:
                server.stop()
        print(f"round {r + 1}: COPY {copies[-1]:.2f} s, adbc_ingest {ingests[-1]:.2f} s "
              f"(of which reading Parquet {reads[-1]:.2f} s)")
    copy, ingested = statistics.median(copies), statistics.median(ingests)
    print(f"Debian graph (10 tables, {rows:,} rows): COPY {copy:.2f} s, adbc_ingest {ingested:.2f} s "
          f"(reading Parquet in the client {statistics.median(reads):.2f} s), "
          f"ingest/COPY {ingested / copy:.2f}x (medians of {rounds} rounds)")
    for name, (median, p99) in latency.items():
        print(f"{name}: median {median * 1e3:.3f} ms, p99 {p99 * 1e3:.3f} ms "
              f"({ROUND_TRIPS} round trips through ADBC DB-API)")


if __name__ == "__main__":
    main()
