#!/usr/bin/env bash
# Print the path of a uv binary, installing uv privately first when none is found.
# Works on PEP 668 system Pythons (Debian 12's python3), with or without pip: nothing is installed into the
# system Python; uv goes to ${XDG_DATA_HOME:-~/.local/share}/speed-run/uv.
set -euo pipefail

if command -v uv >/dev/null 2>&1; then
  command -v uv
  exit 0
fi
private="${XDG_DATA_HOME:-$HOME/.local/share}/speed-run/uv"
if [ -x "$private/bin/uv" ]; then
  echo "$private/bin/uv"
  exit 0
fi

py="$(command -v python3 || command -v python || true)"
if [ -z "$py" ] || ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "speed-run needs Python 3.11 or newer as python3 (found: ${py:-none}). Install it (Debian/Ubuntu:" \
       "apt-get install python3) or install uv yourself: https://docs.astral.sh/uv/" >&2
  exit 1
fi

echo "uv not found; installing it into $private ..." >&2
# pip --target skips the externally-managed check of PEP 668, because it writes outside the system environment.
if "$py" -m pip --version >/dev/null 2>&1 &&
   "$py" -m pip install --quiet --disable-pip-version-check --target "$private" uv >&2 &&
   [ -x "$private/bin/uv" ]; then
  echo "$private/bin/uv"
  exit 0
fi

# No pip (Debian's python3 ships without it): fetch uv's wheel from PyPI with the standard library and unpack
# its binary. A wheel is a zip; the binary sits in uv-<version>.data/scripts/.
echo "pip could not install uv; fetching uv's wheel from PyPI directly ..." >&2
"$py" - "$private" <<'PY'
import io, json, os, platform, sys, urllib.parse, urllib.request, zipfile

dest = sys.argv[1]
machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine().lower())
system = sys.platform
index = "https://pypi.org/pypi/uv/json"
with urllib.request.urlopen(index, timeout=60) as response:
    files = json.load(response)["urls"]

def fits(name: str) -> bool:
    if system.startswith("linux"):
        return "manylinux" in name and name.endswith(f"_{machine}.whl")
    if system == "darwin":
        return "macosx" in name and (machine in name or "universal2" in name)
    return False

wheel = next((f for f in files if f["filename"].endswith(".whl") and fits(f["filename"])), None)
if wheel is None:
    sys.exit(f"no uv wheel on PyPI for {system}/{machine}; install uv yourself: https://docs.astral.sh/uv/")
# Mirrors may answer with relative links.
with urllib.request.urlopen(urllib.parse.urljoin(index, wheel["url"]), timeout=300) as response:
    archive = zipfile.ZipFile(io.BytesIO(response.read()))
member = next(n for n in archive.namelist() if n.endswith(".data/scripts/uv"))
os.makedirs(os.path.join(dest, "bin"), exist_ok=True)
target = os.path.join(dest, "bin", "uv")
with open(target + ".part", "wb") as out:
    out.write(archive.read(member))
os.chmod(target + ".part", 0o755)
os.replace(target + ".part", target)
PY
echo "$private/bin/uv"
