#!/usr/bin/env bash
# A/B load test: plain Caddy against Caddy with mcp_auth, in one Caddy process, measured
# alternately (A B A B ...) so both see the same machine state.
#
#   bench/load.sh                 # warm: one token, served from the verified-token cache
#   MODE=cold bench/load.sh       # cold: cache off, requests rotate over distinct tokens
#
# Knobs (environment): ROUNDS (3), DURATION (10s), CONNS (32), THREADS (1), ALG (RS256),
# TOKENS (1000 in cold mode). Needs wrk (Debian: apt-get install wrk) and Go.
set -euo pipefail

MODE=${MODE:-warm}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
ALG=${ALG:-RS256}
TOKENS=${TOKENS:-1000}
PORT_A=${PORT_A:-18081}
PORT_B=${PORT_B:-18082}

cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "load.sh: wrk is needed (apt-get install wrk)" >&2; exit 2; }
work=$(mktemp -d)
caddy_pid=""
cleanup() {
	if [ -n "$caddy_pid" ]; then kill "$caddy_pid" 2>/dev/null || true; wait "$caddy_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

echo "building caddy with mcp_auth ..." >&2
go build -o "$work/caddy" ./cmd/caddy
n=1
cache=""
if [ "$MODE" = cold ]; then n=$TOKENS; cache="token_cache_size 0"; fi
go run ./bench/mint -dir "$work" -alg "$ALG" -n "$n"

cat >"$work/Caddyfile" <<CADDY
{
	admin off
	auto_https off
	log {
		level ERROR
	}
}
http://127.0.0.1:$PORT_A {
	respond "ok" 200
}
http://127.0.0.1:$PORT_B {
	mcp_auth {
		resource https://mcp.load.test/mcp
		authorization_servers https://as.load.test
		jwks_file $work/jwks.json
		scopes mcp:read
		$cache
	}
	respond "ok" 200
}
CADDY

cat >"$work/tokens.lua" <<'LUA'
local tokens = {}
local i = 0
function init(args)
	for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
	i = math.random(#tokens)
end
function request()
	i = i % #tokens + 1
	return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. tokens[i] })
end
LUA

"$work/caddy" run --config "$work/Caddyfile" --adapter caddyfile >"$work/caddy.log" 2>&1 &
caddy_pid=$!
for _ in $(seq 100); do
	curl -fs "http://127.0.0.1:$PORT_A/" >/dev/null 2>&1 && break
	sleep 0.1
done
tok=$(head -n1 "$work/tokens.txt")
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tok" "http://127.0.0.1:$PORT_B/")
[ "$code" = 200 ] || { echo "load.sh: mcp_auth answered $code to a valid token" >&2; cat "$work/caddy.log" >&2; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT_B/")
[ "$code" = 401 ] || { echo "load.sh: mcp_auth answered $code without a token" >&2; exit 1; }

# run <name> <url> [lua]: prints "req/s p50 p99" of one wrk run
run() {
	local out
	if [ -n "${3:-}" ]; then
		out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$3" "$2" -- "$work/tokens.txt")
	else
		out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$2")
	fi
	if echo "$out" | grep -q "Non-2xx"; then
		echo "load.sh: $1 had non-2xx answers:" >&2; echo "$out" >&2; exit 1
	fi
	echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') $(echo "$out" | awk '$1=="50%" {print $2}') $(echo "$out" | awk '$1=="99%" {print $2}')"
}

echo "mode=$MODE alg=$ALG rounds=$ROUNDS duration=$DURATION conns=$CONNS threads=$THREADS cpus=$(nproc)"
printf '%-6s %-10s %12s %10s %10s\n' round target req/s p50 p99
sum_a=0; sum_b=0
for r in $(seq "$ROUNDS"); do
	read -r ra pa qa < <(run plain "http://127.0.0.1:$PORT_A/" "$work/tokens.lua")
	printf '%-6s %-10s %12s %10s %10s\n' "$r" plain "$ra" "$pa" "$qa"
	read -r rb pb qb < <(run mcp_auth "http://127.0.0.1:$PORT_B/" "$work/tokens.lua")
	printf '%-6s %-10s %12s %10s %10s\n' "$r" mcp_auth "$rb" "$pb" "$qb"
	sum_a=$(awk -v s="$sum_a" -v x="$ra" 'BEGIN {print s + x}')
	sum_b=$(awk -v s="$sum_b" -v x="$rb" 'BEGIN {print s + x}')
done
awk -v a="$sum_a" -v b="$sum_b" -v n="$ROUNDS" \
	'BEGIN {printf "mean req/s: plain %.0f, mcp_auth %.0f, ratio mcp_auth/plain %.3f\n", a / n, b / n, b / a}'
