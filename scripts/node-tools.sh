#!/usr/bin/env bash
# Install Node 22 and the outside MCP clients (conformance suite, MCP Inspector, Claude Code) into a cache; print its bin dir.
# Everything is pinned and goes under ${SPEEDRUN_NODE_TOOLS:-${XDG_CACHE_HOME:-~/.cache}/speed-run/node-tools}; a second
# run with the same pins touches no network. The system's Node (often 20, or none at all) is never used: Node and npm
# come as tarballs from the npm registry (checked against the registry's sha512), then that npm installs the clients.
# Stderr says what took how long; stdout is only the bin dir (node, npm, conformance, mcp-inspector, claude).
set -euo pipefail

node_version=22.23.3
npm_version=10.9.8
conformance_version=0.1.16
inspector_version=2.12.0
claude_version=2.1.332
pins="node=$node_version npm=$npm_version conformance=$conformance_version inspector=$inspector_version claude=$claude_version"

cache="${SPEEDRUN_NODE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/speed-run/node-tools}"
registry="${npm_config_registry:-${NPM_CONFIG_REGISTRY:-https://registry.npmjs.org}}"
registry="${registry%/}"
bin="$cache/bin"
tools=(node npm conformance mcp-inspector claude)

installed() {
  [ "$(cat "$cache/.pins" 2>/dev/null)" = "$pins" ] || return 1
  for tool in "${tools[@]}"; do [ -x "$bin/$tool" ] || return 1; done
}

if installed; then
  echo "$bin"
  exit 0
fi
mkdir -p "$cache"
# Two test sessions (or CI and a developer) must not install into the same cache at once.
exec 9>"$cache/.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
if installed; then
  echo "$bin"
  exit 0
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) platform=linux-x64 ;;
  Linux-aarch64 | Linux-arm64) platform=linux-arm64 ;;
  Darwin-x86_64) platform=darwin-x64 ;;
  Darwin-arm64) platform=darwin-arm64 ;;
  *) echo "node-tools: no Node build on the npm registry for $(uname -s)-$(uname -m)" >&2; exit 1 ;;
esac
# Any Python 3 fetches the tarballs: $PYTHON (the tests pass their own), else python3 on PATH, else uv's.
py="${PYTHON:-$(command -v python3 || command -v python || true)}"
if [ -z "$py" ] && command -v uv >/dev/null 2>&1; then py="$(uv python find 2>/dev/null || true)"; fi
[ -n "$py" ] || { echo "node-tools: a Python 3 is needed to fetch Node (set PYTHON or install python3)" >&2; exit 1; }

started=$SECONDS
rm -rf "$cache/node" "$cache/npm" "$cache/lib" "$cache"/*.part "$bin" "$cache/.pins"
# Fetch a package tarball from the registry, check it against the registry's sha512, unpack it into a directory.
"$py" - "$registry" "$cache" "node-$platform" "$node_version" node npm "$npm_version" npm <<'PY'
import base64, hashlib, io, json, os, sys, tarfile, urllib.parse, urllib.request

registry, cache, *wanted = sys.argv[1:]


def download(name: str, version: str) -> tuple[dict, bytes]:
    """The registry's dist record of name@version and its tarball; one line on stderr and exit 1 if unreachable."""
    try:
        with urllib.request.urlopen(f"{registry}/{urllib.parse.quote(name, safe='@')}/{version}", timeout=60) as reply:
            dist = json.load(reply)["dist"]
        with urllib.request.urlopen(dist["tarball"], timeout=600) as reply:
            return dist, reply.read()
    except (OSError, ValueError, KeyError) as exc:
        sys.exit(f"node-tools: could not fetch {name}@{version} from {registry}: {exc}")


for name, version, target in zip(wanted[0::3], wanted[1::3], wanted[2::3]):
    dist, data = download(name, version)
    algorithm, _, digest = dist["integrity"].partition("-")
    if algorithm != "sha512" or base64.b64encode(hashlib.sha512(data).digest()).decode() != digest:
        sys.exit(f"node-tools: {name}@{version} does not match the registry's checksum; not installed")
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        # The tarballs hold one top folder, "package/"; unpack it as the target folder.
        # Python before 3.11.4 (Debian 12) has no extraction filters; registry tarballs hold only package/ paths.
        if any(m.name != "package" and not m.name.startswith("package/") or ".." in m.name.split("/") for m in archive):
            sys.exit(f"node-tools: {name}@{version} has paths outside package/; not installed")
        extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(os.path.join(cache, target + ".part"), **extra)
    os.replace(os.path.join(cache, target + ".part", "package"), os.path.join(cache, target))
    os.rmdir(os.path.join(cache, target + ".part"))
PY
mkdir -p "$bin"
ln -sf "../node/bin/node" "$bin/node"
chmod +x "$cache/node/bin/node"
cat >"$bin/npm" <<EOF
#!/bin/sh
exec "$cache/node/bin/node" "$cache/npm/bin/npm-cli.js" "\$@"
EOF
chmod +x "$bin/npm"
echo "node-tools: Node $node_version and npm $npm_version fetched in $((SECONDS - started)) s" >&2

started=$SECONDS
# Install scripts (Claude Code's picks its native binary) run with this Node, not the system's.
PATH="$bin:$PATH" npm_config_update_notifier=false "$bin/npm" install --prefix "$cache/lib" --registry "$registry" \
  --no-audit --no-fund --no-save --loglevel=error --fetch-retries=2 \
  "@modelcontextprotocol/conformance@$conformance_version" \
  "@modelcontextprotocol/inspector@$inspector_version" \
  "@anthropic-ai/claude-code@$claude_version" >&2
for tool in conformance mcp-inspector claude; do
  ln -sf "../lib/node_modules/.bin/$tool" "$bin/$tool"
done
echo "node-tools: conformance, inspector and claude installed in $((SECONDS - started)) s" >&2
echo "$pins" >"$cache/.pins"
installed || { echo "node-tools: install finished but a tool is missing in $bin" >&2; exit 1; }
echo "$bin"
