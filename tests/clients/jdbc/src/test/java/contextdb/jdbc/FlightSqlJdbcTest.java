package contextdb.jdbc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.ParameterMetaData;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Types;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * The Apache Arrow Flight SQL JDBC driver (org.apache.arrow:flight-sql-jdbc-driver, the driver
 * DBeaver uses) against a real `contextdb serve`: one server in a temporary data directory for
 * the class, a small graph written through JDBC, then what DBeaver does when it connects and
 * browses, statements and prepared statements in ContextQL and SQL, and errors.
 *
 * <p>The binary comes from the system property {@code contextdb.binary}.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class FlightSqlJdbcTest {
  static final String USER = "ada";
  static final String PASSWORD = "secret";
  static final long START_TIMEOUT_S = 120;

  // The graph; the tests compute their answers from these.
  static final Object[][] PEOPLE = {
    {1L, "Ada", 1815}, {2L, "Alan", 1912}, {3L, "Grace", 1906}, {4L, "Barbara", 1939},
    {5L, "Edsger", 1930},
  };
  static final long[][] KNOWS = {{1, 2}, {1, 3}, {2, 3}, {3, 4}, {4, 5}, {5, 1}};
  static final Object[][] CITIES = {{"London", 8_800_000L, 1572.0}, {"Paris", 2_100_000L, 105.4}};
  static final Object[][] LIVES_IN = {{1L, "London"}, {2L, "London"}, {3L, "Paris"}};

  static final Set<String> NODE_TABLES = Set.of("Person", "City", "Tag");
  static final Set<String> EDGE_TABLES = Set.of("KNOWS", "LIVES_IN");

  Process server;
  /** A connection of each test's own, opened before it and closed after it (a result the
   * driver leaves open fails the test that left it). */
  Connection conn;
  Path dataDir;
  Path log;
  String host = "127.0.0.1";
  int port;
  String http;

  // ---------------------------------------------------------------- the server and the graph

  @BeforeAll
  void startServerAndCreateTheGraph() throws Exception {
    String binary = System.getProperty("contextdb.binary");
    assertNotNull(binary, "-Dcontextdb.binary=PATH/TO/contextdb is required");
    assertTrue(new File(binary).canExecute(), "not an executable: " + binary);
    dataDir = Files.createTempDirectory("contextdb-jdbc");
    log = dataDir.resolve("server.log");
    server =
        new ProcessBuilder(
                binary, "serve",
                "--data-dir", dataDir.resolve("db").toString(),
                "--flight-addr", "127.0.0.1:0",
                "--http-addr", "127.0.0.1:0",
                "--user", USER + ":" + PASSWORD)
            .redirectError(log.toFile())
            .start();
    // A test JVM that dies leaves no server behind.
    Process started = server;
    Runtime.getRuntime().addShutdownHook(new Thread(started::destroyForcibly));
    BufferedReader out =
        new BufferedReader(new InputStreamReader(server.getInputStream(), StandardCharsets.UTF_8));
    String line = CompletableFuture.supplyAsync(() -> readLine(out))
        .completeOnTimeout(null, START_TIMEOUT_S, TimeUnit.SECONDS)
        .get();
    // contextdb serve: flight grpc://127.0.0.1:PORT http http://127.0.0.1:PORT
    Matcher m =
        Pattern.compile("contextdb serve: flight grpc://([^:]+):(\\d+) http (\\S+)")
            .matcher(line == null ? "" : line);
    if (!m.find()) {
      server.destroy();
      server.waitFor(60, TimeUnit.SECONDS);
      throw new IllegalStateException(
          "the server did not start: " + line + "\n" + Files.readString(log));
    }
    host = m.group(1);
    port = Integer.parseInt(m.group(2));
    http = m.group(3);
    Thread drain = new Thread(() -> { while (readLine(out) != null) {} });
    drain.setDaemon(true);
    drain.start();

    try (Connection setup = connect(); Statement s = setup.createStatement()) {
      // DDL in both languages answers 0 rows.
      assertEquals(0, s.executeUpdate(
          "CREATE NODE TABLE Person (id BIGINT PRIMARY KEY, name VARCHAR, born INT)"));
      assertEquals(0, s.executeUpdate(
          "CREATE NODE TABLE City (name VARCHAR PRIMARY KEY, population BIGINT, area DOUBLE)"));
      assertEquals(0, s.executeUpdate("CREATE NODE TABLE Tag (id INT PRIMARY KEY, label VARCHAR)"));
      assertEquals(0, s.executeUpdate("CREATE EDGE TABLE KNOWS (FROM Person TO Person, since INT)"));
      assertEquals(0, s.executeUpdate("CREATE EDGE TABLE LIVES_IN (FROM Person TO City)"));
      assertEquals(0, s.executeUpdate("CREATE TABLE t (a INT, b VARCHAR)"));
      // The same with DataFusion's string type names meaning Utf8, not Utf8View (this
      // connection's session only).
      assertEquals(0, s.executeUpdate(
          "SET datafusion.sql_parser.map_string_types_to_utf8view = false"));
      assertEquals(0, s.executeUpdate("CREATE TABLE notes (id INT, body VARCHAR)"));
      assertEquals(2, s.executeUpdate("INSERT INTO notes VALUES (1, 'first'), (2, 'second')"));

      String people = Arrays.stream(PEOPLE)
          .map(p -> String.format("(%d, '%s', %d)", p[0], p[1], p[2]))
          .collect(Collectors.joining(", "));
      assertEquals(PEOPLE.length, s.executeUpdate("INSERT INTO Person VALUES " + people));
      String cities = Arrays.stream(CITIES)
          .map(c -> String.format("('%s', %d, %s)", c[0], c[1], c[2]))
          .collect(Collectors.joining(", "));
      assertEquals(CITIES.length, s.executeUpdate("INSERT INTO City VALUES " + cities));
      for (long[] k : KNOWS) {
        assertEquals(1, s.executeUpdate(String.format(
            "MATCH (a:Person {id: %d}), (b:Person {id: %d}) CREATE (a)-[:KNOWS {since: %d}]->(b)",
            k[0], k[1], 2000 + k[0] * 10 + k[1])));
      }
      for (Object[] l : LIVES_IN) {
        assertEquals(1, s.executeUpdate(String.format(
            "MATCH (p:Person {id: %d}), (c:City {name: '%s'}) CREATE (p)-[:LIVES_IN]->(c)",
            l[0], l[1])));
      }
    }
  }

  @BeforeEach
  void open() throws SQLException {
    conn = connect();
  }

  @AfterEach
  void close() throws SQLException {
    conn.close();
  }

  @AfterAll
  void stopServer() throws Exception {
    if (server == null) {
      return;
    }
    server.destroy(); // SIGTERM
    boolean exited = server.waitFor(60, TimeUnit.SECONDS);
    String tail = Files.readString(log);
    tail = tail.substring(Math.max(0, tail.length() - 20_000));
    System.out.println("server log:\n" + tail);
    if (!exited) {
      server.destroyForcibly();
    }
    try (var files = Files.walk(dataDir)) {
      files.sorted(Comparator.reverseOrder()).map(Path::toFile).forEach(File::delete);
    }
    assertTrue(exited, "the server did not stop within 60 s of SIGTERM");
    assertEquals(0, server.exitValue(), "the server's exit code on SIGTERM");
  }

  static String readLine(BufferedReader r) {
    try {
      return r.readLine();
    } catch (IOException e) {
      return null;
    }
  }

  String url() {
    return "jdbc:arrow-flight-sql://" + host + ":" + port + "/?useEncryption=false";
  }

  Connection connect() throws SQLException {
    Properties p = new Properties();
    p.setProperty("user", USER);
    p.setProperty("password", PASSWORD);
    return DriverManager.getConnection(url(), p);
  }

  // ---------------------------------------------------------------- helpers

  /** Every row of `rs` as the values of `columns`, by label; closes it. */
  static List<List<Object>> rows(ResultSet rs, String... columns) throws SQLException {
    try (rs) {
      List<List<Object>> out = new ArrayList<>();
      while (rs.next()) {
        List<Object> row = new ArrayList<>();
        for (String c : columns) {
          row.add(rs.getObject(c));
        }
        out.add(row);
      }
      return out;
    }
  }

  /** One string column of every row; closes it. */
  static List<String> strings(ResultSet rs, String column) throws SQLException {
    try (rs) {
      List<String> out = new ArrayList<>();
      while (rs.next()) {
        out.add(rs.getString(column));
      }
      return out;
    }
  }

  /** The messages of `e` and its causes, one a line (Avatica wraps the driver's error). */
  static String messages(Throwable e) {
    StringBuilder out = new StringBuilder();
    for (Throwable t = e; t != null; t = t.getCause()) {
      out.append(t.getMessage()).append('\n');
    }
    return out.toString();
  }

  static List<Object> row(Object... values) {
    return Arrays.asList(values);
  }

  String health() throws Exception {
    HttpResponse<String> r = HttpClient.newHttpClient()
        .send(HttpRequest.newBuilder(URI.create(http + "/health")).build(),
            HttpResponse.BodyHandlers.ofString());
    assertEquals(200, r.statusCode());
    return r.body();
  }

  // ---------------------------------------------------------------- 1. connecting

  @Test
  void connectsWithUserAndPasswordAsProperties() throws SQLException {
    try (Connection c = connect(); Statement s = c.createStatement();
        ResultSet rs = s.executeQuery("SELECT 1 AS one")) {
      assertTrue(rs.next());
      assertEquals(1L, rs.getLong("one"));
      assertFalse(rs.next());
    }
  }

  @Test
  void connectsWithUserAndPasswordInTheUrl() throws SQLException {
    String url = url() + "&user=" + USER + "&password=" + PASSWORD;
    try (Connection c = DriverManager.getConnection(url); Statement s = c.createStatement();
        ResultSet rs = s.executeQuery("MATCH (p:Person) RETURN count(*) AS n")) {
      assertTrue(rs.next());
      assertEquals(PEOPLE.length, rs.getLong("n"));
    }
  }

  @Test
  void refusesAWrongPasswordAndNoPassword() throws SQLException {
    Properties wrong = new Properties();
    wrong.setProperty("user", USER);
    wrong.setProperty("password", "wrong");
    // The handshake fails as the connection opens (gRPC UNAUTHENTICATED).
    SQLException e = assertThrows(SQLException.class,
        () -> DriverManager.getConnection(url(), wrong).close());
    assertTrue(messages(e).contains("UNAUTHENTICATED"), messages(e));
    assertTrue(messages(e).contains("invalid user name or password"), messages(e));
    // Without credentials the driver makes no handshake: the connection opens, and its first
    // call has no token.
    try (Connection c = DriverManager.getConnection(url()); Statement s = c.createStatement()) {
      SQLException none =
          assertThrows(SQLException.class, () -> s.executeQuery("SELECT 1").close());
      assertTrue(messages(none).contains("no bearer token"), messages(none));
    }
  }

  // ---------------------------------------------------------------- 2. what DBeaver reads

  @Test
  void databaseProductAndDriver() throws Exception {
    DatabaseMetaData md = conn.getMetaData();
    assertEquals("ContextDB", md.getDatabaseProductName());
    Matcher version = Pattern.compile("\"version\"\\s*:\\s*\"([^\"]+)\"").matcher(health());
    assertTrue(version.find());
    assertEquals(version.group(1), md.getDatabaseProductVersion());
    assertTrue(md.getDriverName().startsWith("Arrow Flight SQL JDBC Driver"), md.getDriverName());
    assertEquals("18.3.0", md.getDriverVersion());
    assertEquals("\"", md.getIdentifierQuoteString());
    List<String> keywords = Arrays.asList(md.getSQLKeywords().split(",\\s*"));
    assertTrue(keywords.containsAll(List.of("MATCH", "RETURN", "MERGE", "NODE", "EDGE")),
        md.getSQLKeywords());
  }

  /** What DBeaver's JDBCDataSourceInfo and JDBCSQLDialect.initDriverSettings read from
   * SqlInfo when a connection opens (each in its own try: DBeaver falls back on an error). */
  @Test
  void sqlInfoDBeaverReadsOnConnect() throws SQLException {
    DatabaseMetaData md = conn.getMetaData();
    assertFalse(md.isReadOnly());
    assertEquals("schema", md.getSchemaTerm());
    assertEquals("procedure", md.getProcedureTerm());
    assertEquals("catalog", md.getCatalogTerm());
    assertTrue(md.supportsBatchUpdates());
    assertFalse(md.supportsTransactions());
    assertTrue(md.supportsCorrelatedSubqueries());
    assertEquals("\\", md.getSearchStringEscape());
    assertEquals("", md.getExtraNameCharacters());
    assertTrue(md.isCatalogAtStart());
    assertTrue(Arrays.asList(md.getNumericFunctions().split(",\\s*")).contains("abs"));
    assertTrue(Arrays.asList(md.getStringFunctions().split(",\\s*")).contains("upper"));
    assertTrue(Arrays.asList(md.getSystemFunctions().split(",\\s*")).contains("version"));
    assertTrue(Arrays.asList(md.getTimeDateFunctions().split(",\\s*")).contains("now"));
    assertEquals(0, md.getMaxColumnNameLength());
    assertEquals(0, md.getMaxTableNameLength());
  }

  /** JDBCSQLDialect.initDriverSettings asks where catalogs and schemas may be named; the
   * driver reads SqlInfo SQL_CATALOGS_SUPPORTED_ACTIONS and SQL_SCHEMAS_SUPPORTED_ACTIONS
   * (bitmasks of procedure calls, index definitions, privilege definitions), none of which
   * ContextDB has. */
  @Test
  void sqlInfoCatalogAndSchemaActions() throws SQLException {
    DatabaseMetaData md = conn.getMetaData();
    assertFalse(md.supportsCatalogsInIndexDefinitions());
    assertFalse(md.supportsCatalogsInPrivilegeDefinitions());
    assertFalse(md.supportsSchemasInProcedureCalls());
    assertFalse(md.supportsSchemasInIndexDefinitions());
    assertFalse(md.supportsSchemasInPrivilegeDefinitions());
  }

  @Test
  void catalogsSchemasAndTableTypes() throws SQLException {
    DatabaseMetaData md = conn.getMetaData();
    assertEquals(List.of("contextdb"), strings(md.getCatalogs(), "TABLE_CAT"));
    List<List<Object>> schemas = rows(md.getSchemas(), "TABLE_CATALOG", "TABLE_SCHEM");
    assertTrue(schemas.contains(row("contextdb", "main")), schemas.toString());
    assertEquals(List.of(row("contextdb", "main")),
        rows(md.getSchemas("contextdb", "ma%"), "TABLE_CATALOG", "TABLE_SCHEM"));
    assertEquals(Set.of("NODE TABLE", "EDGE TABLE", "TABLE", "VIEW"),
        new TreeSet<>(strings(md.getTableTypes(), "TABLE_TYPE")));
  }

  @Test
  void tablesWithTheirTypes() throws SQLException {
    DatabaseMetaData md = conn.getMetaData();
    Map<String, String> all = new TreeMap<>();
    try (ResultSet rs = md.getTables(null, null, "%", null)) {
      while (rs.next()) {
        assertEquals("contextdb", rs.getString("TABLE_CAT"));
        all.put(rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME"),
            rs.getString("TABLE_TYPE"));
      }
    }
    Map<String, String> expected = new TreeMap<>();
    NODE_TABLES.forEach(t -> expected.put("main." + t, "NODE TABLE"));
    EDGE_TABLES.forEach(t -> expected.put("main." + t, "EDGE TABLE"));
    expected.put("main.t", "TABLE");
    expected.put("main.notes", "TABLE");
    assertEquals(expected, all);

    assertEquals(new TreeSet<>(EDGE_TABLES), new TreeSet<>(strings(
        md.getTables("contextdb", "main", "%", new String[] {"EDGE TABLE"}), "TABLE_NAME")));
    assertEquals(new TreeSet<>(NODE_TABLES), new TreeSet<>(strings(
        md.getTables("contextdb", "main", null, new String[] {"NODE TABLE"}), "TABLE_NAME")));
    Set<String> nodesAndTables = new TreeSet<>(NODE_TABLES);
    nodesAndTables.addAll(List.of("t", "notes"));
    assertEquals(nodesAndTables, new TreeSet<>(strings(
        md.getTables(null, "main", "%", new String[] {"NODE TABLE", "TABLE"}), "TABLE_NAME")));
    assertEquals(List.of("Person"), strings(md.getTables(null, null, "Pers_n", null), "TABLE_NAME"));
    assertEquals(List.of(), strings(md.getTables(null, null, "%", new String[] {"VIEW"}),
        "TABLE_NAME"));
  }

  static String columns(DatabaseMetaData md, String table) throws SQLException {
    List<String> out = new ArrayList<>();
    try (ResultSet rs = md.getColumns("contextdb", "main", table, "%")) {
      while (rs.next()) {
        assertEquals(table, rs.getString("TABLE_NAME"));
        assertEquals("main", rs.getString("TABLE_SCHEM"));
        assertEquals("contextdb", rs.getString("TABLE_CAT"));
        out.add(rs.getInt("ORDINAL_POSITION") + " " + rs.getString("COLUMN_NAME") + " "
            + rs.getInt("DATA_TYPE") + " " + rs.getString("TYPE_NAME"));
      }
    }
    return String.join(", ", out);
  }

  /** Node and edge tables, made by ContextQL: their columns and JDBC types. */
  @Test
  void columnsOfNodeAndEdgeTables() throws SQLException {
    DatabaseMetaData md = conn.getMetaData();
    assertEquals(String.format("1 id %d BIGINT, 2 name %d VARCHAR, 3 born %d INTEGER",
        Types.BIGINT, Types.VARCHAR, Types.INTEGER), columns(md, "Person"));
    assertEquals(String.format("1 name %d VARCHAR, 2 population %d BIGINT, 3 area %d DOUBLE",
        Types.VARCHAR, Types.BIGINT, Types.DOUBLE), columns(md, "City"));
    assertEquals(String.format("1 id %d INTEGER, 2 label %d VARCHAR",
        Types.INTEGER, Types.VARCHAR), columns(md, "Tag"));
    // An edge table's src and dst have the type of its endpoints' keys.
    assertEquals(String.format("1 src %d BIGINT, 2 dst %d BIGINT, 3 since %d INTEGER",
        Types.BIGINT, Types.BIGINT, Types.INTEGER), columns(md, "KNOWS"));
    assertEquals(String.format("1 src %d BIGINT, 2 dst %d VARCHAR",
        Types.BIGINT, Types.VARCHAR), columns(md, "LIVES_IN"));
    // A column pattern picks columns.
    assertEquals(List.of("population"),
        strings(md.getColumns(null, "main", "City", "pop%"), "COLUMN_NAME"));
  }

  /** The SQL table made by `CREATE TABLE t (a INT, b VARCHAR)`: what DBeaver shows for it,
   * and getColumns over every table at once (DBeaver reads a schema's columns that way). */
  @Test
  void columnsOfTheSqlTableAndOfEveryTable() throws SQLException {
    DatabaseMetaData md = conn.getMetaData();
    assertEquals(String.format("1 a %d INTEGER, 2 b %d VARCHAR", Types.INTEGER, Types.VARCHAR),
        columns(md, "t"));
    Set<String> tables = new TreeSet<>(strings(md.getColumns(null, null, "%", "%"), "TABLE_NAME"));
    Set<String> expected = new TreeSet<>(NODE_TABLES);
    expected.addAll(EDGE_TABLES);
    expected.addAll(List.of("t", "notes"));
    assertEquals(expected, tables);
  }

  @Test
  void primaryKeysOfNodeTables() throws SQLException {
    DatabaseMetaData md = conn.getMetaData();
    Map<String, String> keys = Map.of("Person", "id", "City", "name", "Tag", "id");
    for (Map.Entry<String, String> k : keys.entrySet()) {
      assertEquals(
          List.of(row("contextdb", "main", k.getKey(), k.getValue(), 1, k.getKey() + "_pkey")),
          rows(md.getPrimaryKeys(null, "main", k.getKey()),
              "TABLE_CAT", "TABLE_SCHEM", "TABLE_NAME", "COLUMN_NAME", "KEY_SEQ", "PK_NAME"),
          k.getKey());
    }
    for (String table : List.of("KNOWS", "LIVES_IN", "t", "notes")) {
      assertEquals(List.of(), rows(md.getPrimaryKeys("contextdb", "main", table), "COLUMN_NAME"),
          table);
    }
  }

  /** Foreign keys as "FKTABLE.FKCOLUMN -> PKTABLE.PKCOLUMN (FK_NAME, PK_NAME, seq, rules)". */
  static List<String> keys(ResultSet rs) throws SQLException {
    List<String> out = new ArrayList<>();
    try (rs) {
      while (rs.next()) {
        assertEquals("contextdb", rs.getString("PKTABLE_CAT"));
        assertEquals("main", rs.getString("PKTABLE_SCHEM"));
        assertEquals("contextdb", rs.getString("FKTABLE_CAT"));
        assertEquals("main", rs.getString("FKTABLE_SCHEM"));
        out.add(String.format("%s.%s -> %s.%s (%s, %s, %d, %d, %d)",
            rs.getString("FKTABLE_NAME"), rs.getString("FKCOLUMN_NAME"),
            rs.getString("PKTABLE_NAME"), rs.getString("PKCOLUMN_NAME"),
            rs.getString("FK_NAME"), rs.getString("PK_NAME"), rs.getInt("KEY_SEQ"),
            rs.getInt("UPDATE_RULE"), rs.getInt("DELETE_RULE")));
      }
    }
    out.sort(Comparator.naturalOrder());
    return out;
  }

  static String fk(String edge, String column, String node, String key) {
    return String.format("%s.%s -> %s.%s (%s_%s_fkey, %s_pkey, 1, %d, %d)", edge, column, node,
        key, edge, column, node, DatabaseMetaData.importedKeyNoAction,
        DatabaseMetaData.importedKeyNoAction);
  }

  @Test
  void importedExportedAndCrossReferenceKeys() throws SQLException {
    DatabaseMetaData md = conn.getMetaData();
    String knowsSrc = fk("KNOWS", "src", "Person", "id");
    String knowsDst = fk("KNOWS", "dst", "Person", "id");
    String livesSrc = fk("LIVES_IN", "src", "Person", "id");
    String livesDst = fk("LIVES_IN", "dst", "City", "name");
    // An edge table imports its endpoints' keys.
    assertEquals(List.of(knowsDst, knowsSrc), keys(md.getImportedKeys(null, "main", "KNOWS")));
    assertEquals(List.of(livesDst, livesSrc), keys(md.getImportedKeys(null, "main", "LIVES_IN")));
    assertEquals(List.of(), keys(md.getImportedKeys(null, "main", "Person")));
    // A node table's key is exported to the edge tables that end at it.
    assertEquals(List.of(knowsDst, knowsSrc, livesSrc),
        keys(md.getExportedKeys(null, "main", "Person")));
    assertEquals(List.of(livesDst), keys(md.getExportedKeys("contextdb", "main", "City")));
    assertEquals(List.of(), keys(md.getExportedKeys(null, "main", "Tag")));
    assertEquals(List.of(), keys(md.getExportedKeys(null, "main", "t")));
    // Between one node table and one edge table.
    assertEquals(List.of(livesDst),
        keys(md.getCrossReference(null, "main", "City", null, "main", "LIVES_IN")));
    assertEquals(List.of(livesSrc),
        keys(md.getCrossReference(null, "main", "Person", null, "main", "LIVES_IN")));
    assertEquals(List.of(),
        keys(md.getCrossReference(null, "main", "City", null, "main", "KNOWS")));
  }

  /** DatabaseMetaData.getTypeInfo, which DBeaver reads for its list of data types. Driver
   * 18.3.0 does not ask the server (it never sends GetXdbcTypeInfo): Avatica's
   * MetaImpl.getTypeInfo answers JDBC's columns and no rows, and DBeaver falls back on its
   * default types. A driver that does ask gets the stored SQL types. */
  @Test
  void typeInfo() throws SQLException {
    DatabaseMetaData md = conn.getMetaData();
    Map<String, Integer> types = new TreeMap<>();
    try (ResultSet rs = md.getTypeInfo()) {
      ResultSetMetaData columns = rs.getMetaData();
      List<String> labels = new ArrayList<>();
      for (int i = 1; i <= columns.getColumnCount(); i++) {
        labels.add(columns.getColumnLabel(i));
      }
      assertEquals(List.of("TYPE_NAME", "DATA_TYPE", "PRECISION", "LITERAL_PREFIX",
          "LITERAL_SUFFIX", "CREATE_PARAMS", "NULLABLE", "CASE_SENSITIVE", "SEARCHABLE",
          "UNSIGNED_ATTRIBUTE", "FIXED_PREC_SCALE", "AUTO_INCREMENT", "LOCAL_TYPE_NAME",
          "MINIMUM_SCALE", "MAXIMUM_SCALE", "SQL_DATA_TYPE", "SQL_DATETIME_SUB",
          "NUM_PREC_RADIX"), labels);
      while (rs.next()) {
        types.put(rs.getString("TYPE_NAME"), rs.getInt("DATA_TYPE"));
      }
    }
    if (!types.isEmpty()) {
      assertEquals(Types.BIGINT, types.get("BIGINT"), types.toString());
      assertEquals(Types.VARCHAR, types.get("VARCHAR"), types.toString());
      assertEquals(Types.INTEGER, types.get("INTEGER"), types.toString());
      assertEquals(Types.DOUBLE, types.get("DOUBLE"), types.toString());
    }
  }

  // ---------------------------------------------------------------- 3. statements

  @Test
  void statementQueriesInSqlAndContextQL() throws SQLException {
    try (Statement s = conn.createStatement()) {
      List<List<Object>> expected = new ArrayList<>();
      for (Object[] p : PEOPLE) {
        expected.add(row(p[0], p[1], p[2]));
      }
      try (ResultSet rs = s.executeQuery("SELECT id, name, born FROM main.Person ORDER BY id")) {
        ResultSetMetaData md = rs.getMetaData();
        assertEquals(3, md.getColumnCount());
        assertEquals(List.of("id", "name", "born"),
            List.of(md.getColumnLabel(1), md.getColumnLabel(2), md.getColumnLabel(3)));
        assertEquals(List.of(Types.BIGINT, Types.VARCHAR, Types.INTEGER),
            List.of(md.getColumnType(1), md.getColumnType(2), md.getColumnType(3)));
        assertEquals(expected, rows(rs, "id", "name", "born"));
      }

      List<List<Object>> knows = new ArrayList<>();
      for (long[] k : KNOWS) {
        knows.add(row(k[0], k[1]));
      }
      knows.sort(Comparator.comparing((List<Object> r) -> (Long) r.get(0))
          .thenComparing(r -> (Long) r.get(1)));
      assertEquals(knows, rows(s.executeQuery(
          "MATCH (a:Person)-[:KNOWS]->(b:Person) RETURN a.id AS a, b.id AS b ORDER BY a, b"),
          "a", "b"));
      // An edge's property, and a node table keyed by VARCHAR.
      assertEquals(List.of(row("Ada", "London", 2012)), rows(s.executeQuery(
          "MATCH (a:Person {id: 1})-[k:KNOWS]->(b:Person {id: 2}), (a)-[:LIVES_IN]->(c:City) "
              + "RETURN a.name AS name, c.name AS city, k.since AS since"),
          "name", "city", "since"));
      // SQL joins over the edge table's src/dst.
      assertEquals(List.of(row("London", 2L), row("Paris", 1L)), rows(s.executeQuery(
          "SELECT c.name AS city, count(*) AS n FROM main.LIVES_IN l "
              + "JOIN main.City c ON c.name = l.dst GROUP BY c.name ORDER BY c.name"),
          "city", "n"));
      // Statement.execute, as DBeaver's SQL editor runs statements.
      assertTrue(s.execute("MATCH (p:Person) RETURN count(*) AS n"));
      assertEquals(List.of(row((long) PEOPLE.length)), rows(s.getResultSet(), "n"));
      // DBeaver's data view: SELECT * with at most N rows (setMaxRows).
      s.setMaxRows(2);
      assertEquals(List.of(row(1L, 2L, 2012), row(1L, 3L, 2013)), rows(s.executeQuery(
          "SELECT * FROM main.KNOWS ORDER BY src, dst"), "src", "dst", "since"));
    }
  }

  @Test
  void statementUpdatesInSqlAndContextQL() throws SQLException {
    try (Statement s = conn.createStatement()) {
      assertEquals(2, s.executeUpdate("INSERT INTO t VALUES (1, 'one'), (2, 'two')"));
      assertEquals(List.of(row(2L, 3L)),
          rows(s.executeQuery("SELECT count(*) AS n, sum(a) AS total FROM t WHERE a <= 2"),
              "n", "total"));
      assertEquals(1, s.executeUpdate("CREATE (:Tag {id: 1, label: 'math'})"));
      assertEquals(1, s.executeUpdate("CREATE (:Tag {id: 2, label: 'logic'})"));
      assertEquals(List.of(row(1, "math"), row(2, "logic")), rows(s.executeQuery(
          "MATCH (t:Tag) WHERE t.id < 10 RETURN t.id AS id, t.label AS label ORDER BY id"),
          "id", "label"));
      // Statement.execute of a write: no result set, an update count.
      assertFalse(s.execute("MATCH (t:Tag {id: 2}) SET t.label = 'logics'"));
      assertEquals(1, s.getUpdateCount());
      assertEquals(List.of(row("logics")), rows(s.executeQuery(
          "MATCH (t:Tag {id: 2}) RETURN t.label AS label"), "label"));
    }
  }

  /** A SQL table's VARCHAR column reads back as Utf8View (docs/sql.md). */
  @Test
  void sqlTableVarcharColumnsAreReadable() throws SQLException {
    try (Statement s = conn.createStatement()) {
      assertEquals(1, s.executeUpdate("INSERT INTO t VALUES (1000, 'thousand')"));
      try (ResultSet rs = s.executeQuery("SELECT a, b FROM t WHERE a = 1000")) {
        assertEquals(Types.VARCHAR, rs.getMetaData().getColumnType(2));
        assertEquals(List.of(row(1000, "thousand")), rows(rs, "a", "b"));
      }
    }
  }

  /** A SQL table made after `SET datafusion.sql_parser.map_string_types_to_utf8view =
   * false` has Utf8 strings, which the driver reads (in every session). */
  @Test
  void sqlTableDeclaredWithUtf8StringsIsReadable() throws SQLException {
    DatabaseMetaData md = conn.getMetaData();
    assertEquals(String.format("1 id %d INTEGER, 2 body %d VARCHAR", Types.INTEGER,
        Types.VARCHAR), columns(md, "notes"));
    try (Statement s = conn.createStatement()) {
      assertEquals(List.of(row(1, "first"), row(2, "second")),
          rows(s.executeQuery("SELECT id, body FROM notes ORDER BY id"), "id", "body"));
    }
    try (PreparedStatement ps = conn.prepareStatement("SELECT id FROM notes WHERE body = $1")) {
      ps.setString(1, "second");
      assertEquals(List.of(row(2)), rows(ps.executeQuery(), "id"));
    }
  }

  /** Parameters compared with, or written to, a SQL table's VARCHAR column take its type,
   * Utf8View. */
  @Test
  void preparedSqlParametersOfTheSqlTableVarcharColumn() throws SQLException {
    try (PreparedStatement ps = conn.prepareStatement("INSERT INTO t VALUES ($1, $2)")) {
      ps.setInt(1, 2000);
      ps.setString(2, "two thousand");
      assertEquals(1, ps.executeUpdate());
    }
    try (PreparedStatement ps = conn.prepareStatement("SELECT a FROM t WHERE b = $1")) {
      ps.setString(1, "two thousand");
      assertEquals(List.of(row(2000)), rows(ps.executeQuery(), "a"));
      ps.setString(1, "no such text");
      assertEquals(List.of(), rows(ps.executeQuery(), "a"));
    }
  }

  // ---------------------------------------------------------------- 3. prepared statements

  @Test
  void preparedSqlQueryReusedWithNewParameters() throws SQLException {
    try (PreparedStatement ps =
        conn.prepareStatement("SELECT name, born FROM main.Person WHERE id = $1")) {
      ParameterMetaData pmd = ps.getParameterMetaData();
      assertEquals(1, pmd.getParameterCount());
      assertEquals(Types.BIGINT, pmd.getParameterType(1));
      for (Object[] p : PEOPLE) {
        ps.setLong(1, (Long) p[0]);
        assertEquals(List.of(row(p[1], p[2])), rows(ps.executeQuery(), "name", "born"));
      }
    }
    try (PreparedStatement ps = conn.prepareStatement(
        "SELECT count(*) AS n FROM main.KNOWS WHERE src = $1 AND since > $2")) {
      assertEquals(2, ps.getParameterMetaData().getParameterCount());
      for (long person = 1; person <= 5; person++) {
        ps.setLong(1, person);
        ps.setInt(2, 2000);
        long expected = 0;
        for (long[] k : KNOWS) {
          expected += k[0] == person ? 1 : 0;
        }
        assertEquals(List.of(row(expected)), rows(ps.executeQuery(), "n"));
      }
    }
    try (PreparedStatement ps =
        conn.prepareStatement("SELECT id FROM main.Person WHERE name = $1")) {
      for (Object[] p : PEOPLE) {
        ps.setString(1, (String) p[1]);
        assertEquals(List.of(row(p[0])), rows(ps.executeQuery(), "id"));
      }
    }
  }

  @Test
  void preparedSqlUpdateReusedWithNewParameters() throws SQLException {
    try (PreparedStatement ps = conn.prepareStatement("INSERT INTO t (a) VALUES ($1)")) {
      for (int a = 100; a < 103; a++) {
        ps.setInt(1, a);
        assertEquals(1, ps.executeUpdate());
      }
    }
    try (Statement s = conn.createStatement()) {
      assertEquals(List.of(row(3L, 303L)), rows(s.executeQuery(
          "SELECT count(*) AS n, sum(a) AS total FROM t WHERE a >= 100 AND a < 200"),
          "n", "total"));
    }
  }

  /** ContextQL with `$1`. The driver knows a statement's parameters only from the
   * parameter_schema of CreatePreparedStatement: their count (setLong(1, ..) on a statement
   * with none fails with "parameter ordinal 1 out of range") and their Arrow types, which
   * decide how it encodes the values it binds. */
  static final String PARAMETER_SCHEMA =
      "the parameters in CreatePreparedStatement's parameter_schema";

  @Test
  void preparedContextQLQueryReusedWithNewParameters() throws SQLException {
    try (PreparedStatement ps = conn.prepareStatement(
        "MATCH (a:Person {id: $1})-[:KNOWS]->(b:Person) RETURN b.id AS id ORDER BY id")) {
      assertEquals(1, ps.getParameterMetaData().getParameterCount(), PARAMETER_SCHEMA);
      assertEquals(Types.BIGINT, ps.getParameterMetaData().getParameterType(1));
      for (Object[] p : PEOPLE) {
        long person = (Long) p[0];
        List<List<Object>> expected = new ArrayList<>();
        for (long[] k : KNOWS) {
          if (k[0] == person) {
            expected.add(row(k[1]));
          }
        }
        ps.setLong(1, person);
        assertEquals(expected, rows(ps.executeQuery(), "id"), "friends of " + person);
      }
    }
    try (PreparedStatement ps = conn.prepareStatement(
        "MATCH (p:Person)-[:LIVES_IN]->(c:City {name: $1}) RETURN p.name AS name ORDER BY name")) {
      assertEquals(1, ps.getParameterMetaData().getParameterCount(), PARAMETER_SCHEMA);
      assertEquals(Types.VARCHAR, ps.getParameterMetaData().getParameterType(1));
      ps.setString(1, "London");
      assertEquals(List.of(row("Ada"), row("Alan")), rows(ps.executeQuery(), "name"));
      ps.setString(1, "Paris");
      assertEquals(List.of(row("Grace")), rows(ps.executeQuery(), "name"));
    }
  }

  @Test
  void preparedContextQLUpdateReusedWithNewParameters() throws SQLException {
    try (PreparedStatement ps = conn.prepareStatement("CREATE (:Tag {id: $1, label: $2})")) {
      assertEquals(2, ps.getParameterMetaData().getParameterCount(), PARAMETER_SCHEMA);
      assertEquals(Types.INTEGER, ps.getParameterMetaData().getParameterType(1));
      assertEquals(Types.VARCHAR, ps.getParameterMetaData().getParameterType(2));
      for (int id = 100; id < 103; id++) {
        ps.setInt(1, id);
        ps.setString(2, "tag" + id);
        assertEquals(1, ps.executeUpdate());
      }
    }
    try (Statement s = conn.createStatement()) {
      assertEquals(List.of(row(100, "tag100"), row(101, "tag101"), row(102, "tag102")),
          rows(s.executeQuery("MATCH (t:Tag) WHERE t.id >= 100 RETURN t.id AS id, "
              + "t.label AS label ORDER BY id"), "id", "label"));
    }
  }

  /** A prepared ContextQL query without parameters: described from its plan. */
  @Test
  void preparedContextQLQueryWithoutParameters() throws SQLException {
    try (PreparedStatement ps = conn.prepareStatement(
        "MATCH (c:City) RETURN c.name AS name, c.population AS population ORDER BY name")) {
      ResultSetMetaData md = ps.getMetaData();
      assertEquals(2, md.getColumnCount());
      assertEquals(Types.VARCHAR, md.getColumnType(1));
      assertEquals(Types.BIGINT, md.getColumnType(2));
      for (int i = 0; i < 2; i++) {
        assertEquals(List.of(row("London", 8_800_000L), row("Paris", 2_100_000L)),
            rows(ps.executeQuery(), "name", "population"));
      }
    }
  }

  // ---------------------------------------------------------------- 4. errors

  static final Pattern POSITION = Pattern.compile("syntax error at (\\d+):(\\d+)");

  @Test
  void contextQLSyntaxErrorCarriesLineAndColumn() throws SQLException {
    try (Statement s = conn.createStatement()) {
      SQLException e = assertThrows(SQLException.class,
          () -> s.executeQuery("MATCH (p:Person RETURN p").close());
      Matcher m = POSITION.matcher(e.getMessage());
      assertTrue(m.find(), e.getMessage());
      assertEquals("1", m.group(1));
      assertEquals(List.of(row(1L)), rows(s.executeQuery("SELECT 1 AS one"), "one"));
    }
    // A prepared statement reports it as well, and the connection goes on.
    SQLException e = assertThrows(SQLException.class,
        () -> conn.prepareStatement("MATCH (p:Person) RETURN p.name AS name ORDER").close());
    assertTrue(POSITION.matcher(messages(e)).find(), messages(e));
    try (Statement s = conn.createStatement()) {
      assertEquals(List.of(row((long) PEOPLE.length)),
          rows(s.executeQuery("MATCH (p:Person) RETURN count(*) AS n"), "n"));
    }
  }

  /** docs/server.md: a syntax error's message is `syntax error at LINE:COLUMN: ...`, in SQL
   * as in ContextQL. */
  @Test
  void sqlSyntaxErrorCarriesLineAndColumn() throws SQLException {
    try (Statement s = conn.createStatement()) {
      // In the middle of the text (sqlparser knows the token's place) ...
      SQLException e = assertThrows(SQLException.class,
          () -> s.executeQuery("SELECT id FROM main.Person\nWHERE id = = 1").close());
      Matcher m = POSITION.matcher(e.getMessage());
      assertTrue(m.find(), e.getMessage());
      assertEquals(List.of("2", "12"), List.of(m.group(1), m.group(2)));
      // ... and at its end.
      e = assertThrows(SQLException.class,
          () -> s.executeQuery("SELECT id FROM main.Person WHERE").close());
      m = POSITION.matcher(e.getMessage());
      assertTrue(m.find(), e.getMessage());
      assertEquals("1", m.group(1));
      assertEquals(List.of(row(1L)), rows(s.executeQuery("SELECT 1 AS one"), "one"));
    }
  }

  @Test
  void planErrorsAreSqlExceptionsAndTheConnectionGoesOn() throws SQLException {
    try (Statement s = conn.createStatement()) {
      SQLException e = assertThrows(SQLException.class,
          () -> s.executeQuery("SELECT nope FROM main.Person").close());
      assertTrue(e.getMessage().contains("nope"), e.getMessage());
      e = assertThrows(SQLException.class,
          () -> s.executeUpdate("CREATE NODE TABLE Person (id BIGINT PRIMARY KEY)"));
      assertTrue(e.getMessage().contains("already exists"), e.getMessage());
      assertEquals(List.of(row((long) PEOPLE.length)),
          rows(s.executeQuery("SELECT count(*) AS n FROM main.Person"), "n"));
    }
  }
}
