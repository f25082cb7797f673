#!/usr/bin/env bash
# Prepares a Debian/Ubuntu machine and this checkout for the tests and the demo: the mingw-w64
# cross compiler and Wine (installed when run as root, otherwise the exact apt-get line is
# printed), the npm packages, the Windows node.exe, and every build.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake ninja-build g++-mingw-w64-x86-64-posix gcc-mingw-w64-x86-64-posix binutils-mingw-w64-x86-64 wine wine64)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -eq 0 ]; then
    echo "Installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "fltport needs these Debian packages. Install them, then run the command again:"
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}"
    exit 1
  fi
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

npm run build --silent
if [ -f emulator/CMakeLists.txt ]; then node scripts/build-emulator.mjs; fi
node -e "import('./scripts/windows-runtime.mjs').then((m) => { m.windowsNodeExe(); m.ensureWinePrefix(); })"
