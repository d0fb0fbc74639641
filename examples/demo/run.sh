#!/usr/bin/env bash
# Runs the mcp_auth demo on this machine: the demo MCP server on 127.0.0.1:8081 and Caddy with
# mcp_auth on 127.0.0.1:8080 in front of it. Needs only Go. Ctrl-C stops both.
#
#	./examples/demo/run.sh
set -euo pipefail

cd "$(dirname "$0")/../.."   # the repository root: the Caddyfile's paths are relative to it
state=examples/demo/.demo
bin=$state/bin
caddy_port=8080
mcp_port=8081

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

for p in "$caddy_port" "$mcp_port"; do
	if port_open "$p"; then
		echo "run.sh: port $p on 127.0.0.1 is already in use; stop whatever listens there first" >&2
		exit 1
	fi
done

echo "Building Caddy with mcp_auth, the demo MCP server and the token tool into $bin ..."
mkdir -p "$bin"
go build -o "$bin/caddy" ./cmd/caddy
go build -o "$bin/mcpserver" ./examples/demo/mcpserver
go build -o "$bin/token" ./examples/demo/token
"$bin/token" -state "$state" -init   # creates the signing key once, writes jwks.json

pids=()
cleanup() {
	trap - EXIT INT TERM
	if ((${#pids[@]})); then
		echo
		echo "Stopping (PIDs ${pids[*]}) ..."
		kill "${pids[@]}" 2>/dev/null || true
		wait "${pids[@]}" 2>/dev/null || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$bin/mcpserver" -addr "127.0.0.1:$mcp_port" >"$state/mcpserver.log" 2>&1 &
pids+=($!)
# Caddy keeps its autosave and data under the state directory, not in your home directory.
XDG_CONFIG_HOME="$PWD/$state/xdg-config" XDG_DATA_HOME="$PWD/$state/xdg-data" \
	"$bin/caddy" run --config examples/demo/Caddyfile --adapter caddyfile >"$state/caddy.log" 2>&1 &
pids+=($!)

for _ in $(seq 100); do
	if port_open "$caddy_port" && port_open "$mcp_port"; then
		break
	fi
	for pid in "${pids[@]}"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "run.sh: a process exited during start-up; its log:" >&2
			tail -n 20 "$state/caddy.log" "$state/mcpserver.log" >&2
			exit 1
		fi
	done
	sleep 0.1
done
if ! port_open "$caddy_port" || ! port_open "$mcp_port"; then
	echo "run.sh: not listening after 10s; see $state/caddy.log and $state/mcpserver.log" >&2
	exit 1
fi

cat <<'TRY'

The demo is running:
  Caddy + mcp_auth   http://localhost:8080/mcp          (log: examples/demo/.demo/caddy.log,
                                                         access log: examples/demo/.demo/access.log)
  demo MCP server    http://127.0.0.1:8081/mcp          (log: examples/demo/.demo/mcpserver.log)

In another terminal, from the repository root (README.md "Quick start" explains each step):

  # 1. Without a token: 401, and a challenge that points to the metadata document
  curl -si -w '\n' http://localhost:8080/mcp
  curl -s -w '\n' http://localhost:8080/.well-known/oauth-protected-resource/mcp

  # 2. Mint a token with the required scope
  TOKEN=$(go run ./examples/demo/token -scope mcp:read)

  # 3. initialize; the MCP server answers with an Mcp-Session-Id header
  curl -s -w '\n' -D examples/demo/.demo/headers http://localhost:8080/mcp \
    -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' \
    -H 'Accept: application/json, text/event-stream' \
    -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1.0"}}}'
  SESSION=$(awk 'tolower($1)=="mcp-session-id:" {print $2}' examples/demo/.demo/headers | tr -d '\r')

  # 4. The rest of the session
  mcp() {
    curl -s -w '  (HTTP %{http_code})\n' http://localhost:8080/mcp \
      -H "Authorization: Bearer $TOKEN" -H "Mcp-Session-Id: $SESSION" \
      -H 'MCP-Protocol-Version: 2025-11-25' \
      -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
      -d "$1"
  }
  mcp '{"jsonrpc":"2.0","method":"notifications/initialized"}'
  mcp '{"jsonrpc":"2.0","id":2,"method":"tools/list"}'
  mcp '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":3}}}'
  mcp '{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"whoami","arguments":{}}}'

  # 5. A token without mcp:read: 403 insufficient_scope
  OTHER=$(go run ./examples/demo/token -scope profile)
  curl -si -w '\n' http://localhost:8080/mcp \
    -H "Authorization: Bearer $OTHER" \
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    -d '{"jsonrpc":"2.0","id":5,"method":"tools/list"}'

  # 6. A token for another resource, and an expired one: 401 invalid_token
  curl -si -w '\n' http://localhost:8080/mcp -H "Authorization: Bearer $(go run ./examples/demo/token -aud https://other.example/mcp)"
  curl -si -w '\n' http://localhost:8080/mcp -H "Authorization: Bearer $(go run ./examples/demo/token -ttl=-2h)"

Press Ctrl-C to stop.
TRY

# Return as soon as either process ends (or on Ctrl-C); cleanup stops the other.
set +e
wait -n "${pids[@]}"
status=$?
set -e
echo "run.sh: a demo process exited (status $status); see $state/caddy.log and $state/mcpserver.log" >&2
exit 1
