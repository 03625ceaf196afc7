#!/usr/bin/env bash
# XRootD server and client tools (Debian) for the root:// storage plugin's tests:
# `xrootd` serves a private directory, `xrdcp --server` runs its third-party copies,
# `xrdfs` is the tests' external judge. The Python bindings come from PyPI (`xrootd`
# in the test extra). Idempotent: does nothing when all of it is installed.
set -euo pipefail

packages=(xrootd-server xrootd-client xrootd-server-plugins xrootd-plugins xrootd-client-plugins)

installed() {
  local ok
  ok=$(dpkg-query -W -f='${Status}\n' "${packages[@]}" 2>/dev/null | grep -c '^install ok installed$' || true)
  [ "$ok" -eq "${#packages[@]}" ] && command -v xrootd >/dev/null && command -v xrdcp >/dev/null \
    && command -v xrdfs >/dev/null && getent passwd xrootd >/dev/null
}

if installed; then
  echo "xrootd: already installed ($(xrootd -v 2>&1 | head -n 1))"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt_install() { apt-get install -y -q --no-install-recommends "${packages[@]}"; }
if ! apt_install; then
  apt-get update -q
  apt_install
fi
installed || { echo "xrootd: installation incomplete" >&2; exit 1; }
echo "xrootd: installed ($(xrootd -v 2>&1 | head -n 1))"
