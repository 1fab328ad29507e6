#!/usr/bin/env bash
# Install the Keystone that the functional tests start (tests/functional/
# keystone.py) into .keystone-venv, with the versions pinned in
# tests/functional/keystone-requirements.txt. Keystone's own libraries
# differ from custos', so it gets an environment of its own.
#
# Idempotent and quiet once installed; a new requirements file installs
# again. Several test processes may call it at once: the first installs,
# the others wait on the lock and then find the stamp.
set -eu
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
venv=.keystone-venv
requirements=tests/functional/keystone-requirements.txt
stamp=$venv/.custos-installed

installed() { [ -f "$stamp" ] && [ ! "$requirements" -nt "$stamp" ]; }

installed && exit 0
mkdir -p "$venv"
exec 9>"$venv/.install.lock"
flock 9
installed && exit 0
echo "installing Keystone into $venv" >&2
[ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
touch "$stamp"
