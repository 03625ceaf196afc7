#!/usr/bin/env bash
# gfal2 and davix, the grid's reference clients, to judge `fedlake se serve`: gfal-copy,
# gfal-sum, gfal-ls, gfal-rm, gfal-mkdir over http(s)/dav(s). The gfal-* scripts need
# GFAL_PYTHONBIN=/usr/bin/python3 (Debian's python3-gfal2 is only there).
set -euo pipefail

have_all() {
  command -v gfal-copy >/dev/null 2>&1 && command -v davix-ls >/dev/null 2>&1 &&
    command -v openssl >/dev/null 2>&1 && command -v curl >/dev/null 2>&1 &&
    /usr/bin/python3 -c 'import gfal2' >/dev/null 2>&1 &&
    ls /usr/lib/x86_64-linux-gnu/gfal2-plugins/libgfal_plugin_http.so >/dev/null 2>&1
}

if have_all; then
  exit 0
fi

packages=(gfal2 gfal2-util-scripts python3-gfal2-util python3-gfal2 gfal2-plugin-http
  gfal2-plugin-file davix openssl curl)
export DEBIAN_FRONTEND=noninteractive
apt_install() {
  # wait for another installer holding the dpkg lock instead of failing at once
  apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "${packages[@]}"
}
if ! apt_install; then
  apt-get update -q -o DPkg::Lock::Timeout=300
  apt_install
fi
have_all || { echo "gfal2/davix are still missing after the install" >&2; exit 1; }
