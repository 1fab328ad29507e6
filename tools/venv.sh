# Sourced by the other tools: make .venv and install custos into it.
# Versions come from constraints.txt, so every machine (and the generated
# sample configuration) sees the same libraries.
set -eu
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.custos-installed
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check \
        -c constraints.txt -e '.[test]'
    touch "$stamp"
fi
# Bytecode for custos' own modules, as an installed package has it: with
# PYTHONDONTWRITEBYTECODE set (as in some CI images) every agent and CLI
# start would compile them again. Only changed files are compiled.
.venv/bin/python -m compileall -q agent db rpcapi >/dev/null
