#!/usr/bin/env bash
# Peak resident memory of loading the whole Debian graph and querying it with a given hot-tier
# budget (issue 6's target: under 1 GiB with 256 MiB). Uses GNU time's maximum resident set
# size of each `contextdb shell` process.
#
#   benches/scripts/peak-memory.sh [BUDGET]        (default 256MiB)
#
# CONTEXTDB names the binary (default: target/debug/contextdb, built if missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
budget="${1:-256MiB}"
if [ ! -x /usr/bin/time ]; then
  echo "peak-memory.sh needs GNU time at /usr/bin/time (Debian package \`time\`)" >&2
  exit 2
fi
bin="${CONTEXTDB:-target/debug/contextdb}"
[ -x "$bin" ] || cargo build -q -p contextdb-cli
data="$(cd ../shared/data/debian && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sed "s#__DATA__#$data#g" tests/debian/load.cql > "$work/load.cql"
cat > "$work/queries.cql" <<'CQL'
MATCH (a:Package)-[:DEPENDS]->(b:Package {name:'libc6'}) RETURN count(*);
MATCH (a:Package)-[:DEPENDS]->(:Package)-[:DEPENDS]->(b:Package {name:'libc6'}) RETURN count(*);
MATCH (m:Maintainer)-[:MAINTAINS]->(p:Package)-[:TAGGED]->(t:Tag) RETURN count(*);
MATCH (p:Package)-[:IN_SECTION]->(s:Section) RETURN s.name, count(*) ORDER BY count(*) DESC LIMIT 3;
MATCH (p:Package)-[:RECOMMENDS|SUGGESTS]->(q:Package) RETURN count(DISTINCT q);
SELECT count(*) FROM Package WHERE installed_size_kb > 10000;
SELECT section, count(*) FROM Package GROUP BY section ORDER BY 2 DESC LIMIT 3;
MATCH (p:Package) RETURN count(*);
CQL
run() {
  local what="$1" script="$2"
  /usr/bin/time -f "%M" -o "$work/rss" "$bin" shell --data-dir "$work/db" \
    --cache-size "$budget" --file-root "$data" < "$script" > "$work/out" 2> "$work/err" || {
    cat "$work/err" >&2
    exit 1
  }
  local answers
  answers="$(grep -cE '^\((1 row|[0-9]+ rows)\)$|rows affected' "$work/out" || true)"
  echo "$what: peak RSS $(( $(cat "$work/rss") / 1024 )) MiB, $answers statements answered (budget $budget)"
}
run "load the Debian graph" "$work/load.cql"
run "query it" "$work/queries.cql"
