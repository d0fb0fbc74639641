#!/usr/bin/env bash
# Renders docs/img/dashboard.png: the Grafana dashboard's own panels and PromQL, drawn by our
# renderer (panels/) from a real Prometheus that scraped a real Caddy with mcp_auth under load.
# Not Grafana's UI (Grafana is not available where this was built); see docs/operations.md.
#
#	./examples/observability/render/render.sh [seconds of load, default 150]
#
# Needs Go, Debian's prometheus and chromium packages and redis-server. Everything binds
# 127.0.0.1 on free ports, runs in a temporary directory, and every process it starts is
# stopped by its PID when it ends.
set -euo pipefail

cd "$(dirname "$0")/../../.."   # the repository root
duration=${1:-150}
out=${OUT:-docs/img/dashboard.png}
for cmd in go prometheus chromium redis-server; do
	command -v "$cmd" >/dev/null || { echo "render.sh: $cmd not found" >&2; exit 1; }
done

tmp=$(mktemp -d)
pids=()
cleanup() {
	trap - EXIT INT TERM
	if ((${#pids[@]})); then
		kill "${pids[@]}" 2>/dev/null || true
		wait "${pids[@]}" 2>/dev/null || true
	fi
	if [[ -z ${KEEP:-} ]]; then rm -rf "$tmp"; else echo "render.sh: kept $tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
taken=" "
free_port() {
	local p
	for _ in $(seq 200); do
		p=$((20000 + RANDOM % 20000))
		if [[ $taken != *" $p "* ]] && ! port_open "$p"; then
			taken+="$p "
			echo "$p"
			return
		fi
	done
	echo "render.sh: no free port" >&2
	exit 1
}
wait_port() { # port, name, pid
	for _ in $(seq 300); do
		port_open "$1" && return 0
		kill -0 "$3" 2>/dev/null || { echo "render.sh: $2 exited; logs in $tmp" >&2; tail -n 20 "$tmp/$2.log" >&2; exit 1; }
		sleep 0.1
	done
	echo "render.sh: $2 not listening on $1 after 30s" >&2
	exit 1
}

http_port=$(free_port); admin_port=$(free_port); as_port=$(free_port); mcp_port=$(free_port)
redis_port=$(free_port); proxy_port=$(free_port); prom_port=$(free_port)

echo "render.sh: building Caddy with mcp_auth, the rig and the renderer into $tmp"
go build -o "$tmp/caddy" ./cmd/caddy
go build -o "$tmp/rig" ./examples/observability/render/rig
go build -o "$tmp/panels" ./examples/observability/render/panels

redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
	--dir "$tmp" >"$tmp/redis.log" 2>&1 &
pids+=($!); wait_port "$redis_port" redis $!

"$tmp/rig" -as "127.0.0.1:$as_port" -mcp "127.0.0.1:$mcp_port" \
	-store-proxy "127.0.0.1:$proxy_port" -store "127.0.0.1:$redis_port" \
	-caddy "http://127.0.0.1:$http_port" -duration "${duration}s" >"$tmp/rig.log" 2>&1 &
rig_pid=$!; pids+=($rig_pid); wait_port "$as_port" rig $rig_pid

cat >"$tmp/Caddyfile" <<CADDY
{
	admin 127.0.0.1:$admin_port
	auto_https off
	default_bind 127.0.0.1
	persist_config off
}

:$http_port {
	# The matcher lets the second resource's metadata document through as well.
	@files path /files* /.well-known/oauth-protected-resource/files
	handle @files {
		mcp_auth {
			resource http://127.0.0.1:$http_port/files
			authorization_servers http://127.0.0.1:$as_port
			scopes files:read
		}
		reverse_proxy 127.0.0.1:$mcp_port
	}
	handle {
		mcp_auth {
			resource http://127.0.0.1:$http_port/mcp
			authorization_servers http://127.0.0.1:$as_port
			scopes mcp:read
			introspection {
				client_id render-rs
				client_secret render-introspection-secret
				cache_ttl 20s
				negative_ttl 5s
			}
			store redis {
				# the rig's proxy in front of Redis, which drops it for a while
				address 127.0.0.1:$proxy_port
				encryption_key render-store-key-of-at-least-32-bytes
			}
		}
		reverse_proxy 127.0.0.1:$mcp_port
	}
}
CADDY
XDG_CONFIG_HOME="$tmp/xdg-config" XDG_DATA_HOME="$tmp/xdg-data" \
	"$tmp/caddy" run --config "$tmp/Caddyfile" --adapter caddyfile >"$tmp/caddy.log" 2>&1 &
pids+=($!); wait_port "$http_port" caddy $!

mkdir -p "$tmp/prom-data"
cat >"$tmp/prometheus.yml" <<PROM
global:
  scrape_interval: 2s
  evaluation_interval: 2s
scrape_configs:
  - job_name: caddy
    static_configs:
      - targets: ["127.0.0.1:$admin_port"]
PROM
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/prom-data" \
	--web.listen-address="127.0.0.1:$prom_port" >"$tmp/prometheus.log" 2>&1 &
pids+=($!); wait_port "$prom_port" prometheus $!

start=$(date +%s)
echo "render.sh: load for ${duration}s (rig log: $tmp/rig.log)"
wait "$rig_pid" || { echo "render.sh: the rig failed:" >&2; tail -n 20 "$tmp/rig.log" >&2; exit 1; }
sleep 6   # two more scrapes after the last request
end=$(date +%s)
cat "$tmp/rig.log"

"$tmp/panels" -dashboard examples/observability/grafana-dashboard.json \
	-prometheus "http://127.0.0.1:$prom_port" -start "$start" -end "$end" -out "$tmp/dashboard.html"
height=$(cat "$tmp/dashboard.html.height")
mkdir -p "$(dirname "$out")"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
	--disable-background-networking --disable-component-update --disable-sync \
	--user-data-dir="$tmp/chromium" --hide-scrollbars --window-size="1600,$height" \
	--screenshot="$PWD/$out" "file://$tmp/dashboard.html" >"$tmp/chromium.log" 2>&1
echo "render.sh: wrote $out"
