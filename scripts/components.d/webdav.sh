#!/usr/bin/env bash
# WebDAV test servers: XRootD's HTTP interface XrdHttp (with the HTTP-TPC handler
# libXrdHttpTPC, over TLS with a certificate made by openssl) and curl for the upload
# benchmark. WsgiDAV/cheroot are Python packages: pyproject's `test` extra.
set -euo pipefail

have_all() {
  command -v xrootd >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1 &&
    command -v curl >/dev/null 2>&1 && ldconfig -p | grep -q 'libXrdHttpTPC'
}

if have_all; then
  exit 0
fi

packages=(xrootd-server xrootd-server-plugins xrootd-plugins xrootd-client openssl curl)
export DEBIAN_FRONTEND=noninteractive
apt_install() {
  # wait for another installer holding the dpkg lock instead of failing at once
  apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "${packages[@]}"
}
if ! apt_install; then
  apt-get update -q -o DPkg::Lock::Timeout=300
  apt_install
fi
have_all || { echo "xrootd with libXrdHttpTPC is still missing after the install" >&2; exit 1; }
