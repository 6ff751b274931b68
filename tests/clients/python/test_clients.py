"""pyarrow.flight and ADBC (adbc_driver_flightsql, DB-API) against a real `contextdb serve`.

Usage: test_clients.py PATH/TO/contextdb. Starts one server on free ports in a temporary data
directory, runs every `test_*` function against it, and prints `N passed, M failed`.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import traceback
import urllib.request

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pyarrow as pa
import pyarrow.flight as flight

USER, PASSWORD = "ada", "secret"
START_TIMEOUT_S = 120

# A small graph whose answers the tests compute themselves.
PEOPLE = [(1, "Ada"), (2, "Alan"), (3, "Grace"), (4, "Barbara"), (5, "Edsger")]
KNOWS = [(1, 2), (1, 3), (2, 3), (3, 4), (4, 5), (5, 1)]


class Server:
    def __init__(self, binary, data_dir):
        self.log = open(os.path.join(data_dir, "server.log"), "w+")
        self.process = subprocess.Popen(
            [
                binary, "serve", "--data-dir", os.path.join(data_dir, "db"),
                "--flight-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
                "--user", f"{USER}:{PASSWORD}",
            ],
            stdout=subprocess.PIPE, stderr=self.log, text=True,
        )
        line = [None]
        reader = threading.Thread(target=lambda: line.__setitem__(0, self.process.stdout.readline()))
        reader.start()
        reader.join(START_TIMEOUT_S)
        words = (line[0] or "").split()
        if words[:3] != ["contextdb", "serve:", "flight"]:
            self.stop()
            self.log.seek(0)
            raise RuntimeError(f"the server did not start: {line[0]!r}\n{self.log.read()}")
        self.uri = words[3]
        self.http = words[5]

    def stop(self):
        self.process.terminate()
        code = self.process.wait(60)
        self.log.close()
        return code


def any_command(type_name, fields):
    """A Flight SQL command wrapped in google.protobuf.Any, encoded by hand: fields are
    (number, bytes) pairs of length-delimited fields, or (number, bool)."""

    def varint(n):
        out = bytearray()
        while True:
            byte = n & 0x7F
            n >>= 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                return bytes(out)

    def field(number, value):
        if isinstance(value, bool):
            return varint(number << 3) + varint(int(value))
        return varint((number << 3) | 2) + varint(len(value)) + value

    body = b"".join(field(n, v) for n, v in fields)
    type_url = f"type.googleapis.com/arrow.flight.protocol.sql.{type_name}".encode()
    return field(1, type_url) + field(2, body)


def adbc(server):
    return flight_sql.connect(
        uri=server.uri,
        db_kwargs={"username": USER, "password": PASSWORD},
        autocommit=True,
    )


def test_adbc_writes_and_reads_in_both_languages(server):
    with adbc(server) as conn, conn.cursor() as cur:
        cur.execute("CREATE NODE TABLE Person (id BIGINT PRIMARY KEY, name VARCHAR)")
        cur.execute("CREATE EDGE TABLE KNOWS (FROM Person TO Person)")
        values = ", ".join(f"({i}, '{n}')" for i, n in PEOPLE)
        cur.execute(f"INSERT INTO Person VALUES {values}")
        for a, b in KNOWS:
            cur.execute(
                f"MATCH (a:Person {{id: {a}}}), (b:Person {{id: {b}}}) CREATE (a)-[:KNOWS]->(b)"
            )
        cur.execute("SELECT id, name FROM main.Person ORDER BY id")
        table = cur.fetch_arrow_table()
        assert list(zip(table["id"].to_pylist(), table["name"].to_pylist())) == PEOPLE
        cur.execute(
            "MATCH (a:Person)-[:KNOWS]->(b:Person) RETURN a.id AS a, b.id AS b ORDER BY a, b"
        )
        table = cur.fetch_arrow_table()
        assert list(zip(table["a"].to_pylist(), table["b"].to_pylist())) == sorted(KNOWS)


def test_adbc_binds_parameters_in_both_languages(server):
    names = dict(PEOPLE)
    with adbc(server) as conn, conn.cursor() as cur:
        # Positional, through a prepared statement the cursor reuses.
        for person in (1, 3, 5):
            cur.execute("SELECT name FROM Person WHERE id = $1", parameters=(person,))
            assert cur.fetchall() == [(names[person],)]
        # Dependents two hops away in ContextQL, by position and by name.
        for person in (1, 4):
            expected = sorted(
                {c for a, b in KNOWS if a == person for b2, c in KNOWS if b2 == b}
            )
            cur.execute(
                "MATCH (a:Person)-[:KNOWS]->(:Person)-[:KNOWS]->(c:Person) WHERE a.id = $1 "
                "RETURN DISTINCT c.id AS id ORDER BY id",
                parameters=(person,),
            )
            assert [r[0] for r in cur.fetchall()] == expected
            named = pa.record_batch([pa.array([person], pa.int64())], names=["who"])
            cur.execute(
                "MATCH (a:Person {id: $who})-[:KNOWS]->(b:Person) RETURN b.id AS id ORDER BY id",
                parameters=named,
            )
            assert [r[0] for r in cur.fetchall()] == sorted(b for a, b in KNOWS if a == person)


def test_adbc_prepared_statement_reused_with_new_parameters(server):
    with adbc(server) as conn, conn.cursor() as cur:
        query = "SELECT count(*) AS n FROM KNOWS WHERE src = $1"
        cur.adbc_prepare(query)
        for person, _ in PEOPLE:
            cur.execute(query, parameters=(person,))
            assert cur.fetchone()[0] == sum(1 for a, _ in KNOWS if a == person)


def test_adbc_metadata(server):
    with adbc(server) as conn:
        objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
        catalogs = {c["catalog_name"]: c for c in objects}
        assert "contextdb" in catalogs, catalogs.keys()
        schemas = {s["db_schema_name"]: s for s in catalogs["contextdb"]["catalog_db_schemas"]}
        tables = {t["table_name"]: t for t in schemas["main"]["db_schema_tables"]}
        assert tables["Person"]["table_type"] == "NODE TABLE"
        assert tables["KNOWS"]["table_type"] == "EDGE TABLE"
        columns = [c["column_name"] for c in tables["Person"]["table_columns"]]
        assert columns == ["id", "name"], columns
        schema = conn.adbc_get_table_schema("Person", db_schema_filter="main")
        assert schema.names == ["id", "name"]
        assert schema.field("id").type == pa.int64()
        info = conn.adbc_get_info()
        assert info["vendor_name"] == "ContextDB", info


def test_adbc_errors_have_their_status(server):
    with adbc(server) as conn, conn.cursor() as cur:
        try:
            cur.execute("MATCH (p:Person RETURN p")
            raise AssertionError("a syntax error was accepted")
        except adbc_driver_manager.ProgrammingError as e:
            assert "1:" in str(e) and "syntax error" in str(e), str(e)
        cur.execute("SELECT 1 AS one")
        assert cur.fetchall() == [(1,)]
    try:
        bad = flight_sql.connect(
            uri=server.uri, db_kwargs={"username": USER, "password": "wrong"}, autocommit=True
        )
        with bad.cursor() as cur:
            cur.execute("SELECT 1")
        raise AssertionError("wrong credentials were accepted")
    except adbc_driver_manager.Error as e:
        assert "nauthenticated" in str(e) or "UNAUTHENTICATED" in str(e), str(e)


def test_pyarrow_flight_raw_commands(server):
    client = flight.FlightClient(server.uri)
    with_token = flight.FlightCallOptions(
        headers=[client.authenticate_basic_token(USER.encode(), PASSWORD.encode())]
    )
    query = any_command("CommandStatementQuery", [(1, b"SELECT id, name FROM Person ORDER BY id")])
    info = client.get_flight_info(flight.FlightDescriptor.for_command(query), with_token)
    table = client.do_get(info.endpoints[0].ticket, with_token).read_all()
    assert table.schema == info.schema
    assert table["name"].to_pylist() == [n for _, n in PEOPLE]

    tables = any_command("CommandGetTables", [(5, True)])
    info = client.get_flight_info(flight.FlightDescriptor.for_command(tables), with_token)
    listed = client.do_get(info.endpoints[0].ticket, with_token).read_all().to_pylist()
    kinds = {t["table_name"]: t["table_type"] for t in listed}
    assert kinds == {"Person": "NODE TABLE", "KNOWS": "EDGE TABLE"}, kinds
    person = next(t for t in listed if t["table_name"] == "Person")
    assert pa.ipc.read_schema(pa.py_buffer(person["table_schema"])).names == ["id", "name"]

    keys = any_command("CommandGetImportedKeys", [(3, b"KNOWS")])
    info = client.get_flight_info(flight.FlightDescriptor.for_command(keys), with_token)
    imported = client.do_get(info.endpoints[0].ticket, with_token).read_all().to_pylist()
    assert sorted((k["fk_column_name"], k["pk_table_name"], k["pk_column_name"]) for k in imported) == [
        ("dst", "Person", "id"), ("src", "Person", "id")
    ]

    try:
        client.get_flight_info(flight.FlightDescriptor.for_command(query))
        raise AssertionError("a call without a token was accepted")
    except flight.FlightUnauthenticatedError:
        pass
    try:
        client.do_get(flight.Ticket(b"not a ticket"), with_token).read_all()
        raise AssertionError("a malformed ticket was accepted")
    except pa.ArrowInvalid as e:
        assert "invalid argument" in str(e), str(e)
    # ... and the server goes on answering.
    info = client.get_flight_info(flight.FlightDescriptor.for_command(query), with_token)
    assert client.do_get(info.endpoints[0].ticket, with_token).read_all().num_rows == len(PEOPLE)


# The Debian graph (../shared/data/debian): node tables keyed by `id`, edge tables `src`/`dst`.
DEBIAN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../../shared/data/debian")
DEBIAN_NODES = {"Package": "package", "Maintainer": "maintainer", "Tag": "tag", "Section": "section"}
DEBIAN_EDGES = {
    "DEPENDS": ("depends", "Package", "Package"),
    "RECOMMENDS": ("recommends", "Package", "Package"),
    "SUGGESTS": ("suggests", "Package", "Package"),
    "MAINTAINS": ("maintains", "Maintainer", "Package"),
    "TAGGED": ("tagged", "Package", "Tag"),
    "IN_SECTION": ("in_section", "Package", "Section"),
}
HEADER = "adbc.flight.sql.rpc.call_header."


def ingest(conn, name, table, mode, **kind):
    """adbc_ingest of `table`, with ContextDB's table kind options as request headers. The
    batches are cut to 8192 rows: the Go driver sends at most 16 MiB in one message."""
    table = pa.Table.from_batches(table.to_batches(max_chunksize=8192), table.schema)
    with conn.cursor() as cur:
        cur.adbc_statement.set_options(
            **{HEADER + "x-contextdb-" + k.replace("_", "-"): v for k, v in kind.items()}
        )
        return cur.adbc_ingest(name, table, mode=mode)


def test_adbc_ingests_the_debian_graph(server):
    import pyarrow.parquet as pq

    files = {}
    with adbc(server) as conn:
        for label, file in DEBIAN_NODES.items():
            files[label] = pq.read_table(os.path.join(DEBIAN, file + ".parquet"))
            rows = ingest(conn, label, files[label], "create", kind="node", primary_key="id")
            assert rows == files[label].num_rows, (label, rows)
        for rel, (file, source, target) in DEBIAN_EDGES.items():
            files[rel] = pq.read_table(os.path.join(DEBIAN, file + ".parquet"))
            rows = ingest(conn, rel, files[rel], "create_append", kind="edge", **{"from": source, "to": target})
            assert rows == files[rel].num_rows, (rel, rows)

        # Independent answers, from the files.
        package = dict(zip(files["Package"]["id"].to_pylist(), files["Package"]["name"].to_pylist()))
        ids_named = lambda name: {i for i, n in package.items() if n == name}
        depends = list(zip(files["DEPENDS"]["src"].to_pylist(), files["DEPENDS"]["dst"].to_pylist()))
        section = dict(zip(files["Section"]["id"].to_pylist(), files["Section"]["name"].to_pylist()))
        in_section = dict(zip(files["IN_SECTION"]["src"].to_pylist(), files["IN_SECTION"]["dst"].to_pylist()))
        maintainer = dict(zip(files["Maintainer"]["id"].to_pylist(), files["Maintainer"]["name"].to_pylist()))
        maintains = list(zip(files["MAINTAINS"]["src"].to_pylist(), files["MAINTAINS"]["dst"].to_pylist()))

        with conn.cursor() as cur:
            for label in list(DEBIAN_NODES) + list(DEBIAN_EDGES):
                cur.execute(f"SELECT count(*) FROM main.{label}")
                assert cur.fetchone()[0] == files[label].num_rows, label
            # ContextQL patterns with bound parameters.
            for name in ("libssl3", "python3", "libc6"):
                target = ids_named(name)
                expected = len({a for a, b in depends if b in target})
                cur.execute(
                    "MATCH (p:Package)-[:DEPENDS]->(q:Package {name: $1}) RETURN count(DISTINCT p.id)",
                    parameters=(name,),
                )
                assert cur.fetchone()[0] == expected, name
            start = ids_named("curl")
            hop1 = {b for a, b in depends if a in start}
            hop2 = {b for a, b in depends if a in hop1}
            cur.execute(
                "MATCH (a:Package {name: $1})-[:DEPENDS]->(:Package)-[:DEPENDS]->(c:Package) "
                "RETURN DISTINCT c.name AS name ORDER BY name",
                parameters=("curl",),
            )
            assert [r[0] for r in cur.fetchall()] == sorted({package[c] for c in hop2})
            wanted = "python"
            counts = {}
            for m, p in maintains:
                if section.get(in_section.get(p)) == wanted:
                    counts[maintainer[m]] = counts.get(maintainer[m], 0) + 1
            top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
            cur.execute(
                "MATCH (m:Maintainer)-[:MAINTAINS]->(p:Package)-[:IN_SECTION]->(s:Section {name: $1}) "
                "RETURN m.name AS maintainer, count(*) AS n ORDER BY n DESC, maintainer LIMIT 5",
                parameters=(wanted,),
            )
            assert cur.fetchall() == top
            # SQL joins over the same tables.
            per_section = {}
            for p, s in in_section.items():
                per_section[section[s]] = per_section.get(section[s], 0) + 1
            top = sorted(per_section.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
            cur.execute(
                "SELECT s.name, count(*) AS n FROM main.Package p "
                "JOIN main.IN_SECTION e ON e.src = p.id JOIN main.Section s ON s.id = e.dst "
                "GROUP BY s.name ORDER BY n DESC, s.name LIMIT 10"
            )
            assert cur.fetchall() == top
            # The embeddings arrive as they left.
            first = files["Package"].slice(0, 1).to_pylist()[0]
            cur.execute("SELECT embedding FROM main.Package WHERE id = $1", parameters=(first["id"],))
            assert cur.fetch_arrow_table()["embedding"].to_pylist()[0] == first["embedding"]

        # Mode create refuses a table that exists; replace swaps its rows in one commit.
        try:
            ingest(conn, "Section", files["Section"], "create", kind="node", primary_key="id")
            raise AssertionError("mode create replaced a table")
        except adbc_driver_manager.Error as e:
            assert "already exists" in str(e), str(e)
        assert ingest(conn, "Section", files["Section"].slice(0, 10), "replace") == 10
        with conn.cursor() as cur:
            cur.execute("MATCH (s:Section) RETURN count(*)")
            assert cur.fetchone()[0] == 10


def test_http_health_and_metrics(server):
    with urllib.request.urlopen(f"{server.http}/health", timeout=10) as r:
        health = json.load(r)
    assert health["status"] == "ok" and health["catalog_version"] > 0, health
    with urllib.request.urlopen(f"{server.http}/metrics", timeout=10) as r:
        metrics = r.read().decode()
    assert 'contextdb_statements_total{language="contextql"' in metrics
    assert "contextdb_statement_duration_seconds_bucket" in metrics


def main():
    binary = os.path.abspath(sys.argv[1])
    print(f"pyarrow {pa.__version__}, adbc_driver_flightsql {adbc_driver_flightsql.__version__}")
    tests = [(name, f) for name, f in globals().items() if name.startswith("test_")]
    passed = failed = 0
    with tempfile.TemporaryDirectory() as data_dir:
        server = Server(binary, data_dir)
        try:
            for name, test in tests:
                try:
                    test(server)
                    passed += 1
                    print(f"ok {name}")
                except Exception:
                    failed += 1
                    print(f"FAILED {name}\n{traceback.format_exc()}")
        finally:
            code = server.stop()
            if code != 0:
                failed += 1
                print(f"FAILED the server exited with {code} on SIGTERM")
            if failed:
                with open(os.path.join(data_dir, "server.log")) as log:
                    print("server log:\n" + log.read()[-5000:])
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
