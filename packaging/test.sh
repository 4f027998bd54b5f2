#!/usr/bin/env bash
# The whole test suite on a fresh Debian/Ubuntu machine: installs what is
# missing, then runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh
exec .venv/bin/python -m pytest "$@"
