#!/usr/bin/env bash
# The whole test suite on a fresh Debian/Ubuntu machine: installs what is
# missing, then runs pytest. Extra arguments go to pytest (and only that run
# is made). Without arguments the network tests run a second time on stock
# pynetdicom ([network] fast_path = false, through KIOSK_FAST_PATH), as CI does.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh
if [ $# -gt 0 ]; then
    exec .venv/bin/python -m pytest "$@"
fi
.venv/bin/python -m pytest
echo "--- the network tests again, fast path off (stock pynetdicom) ---"
# Left out: STOW-RS (HTTP, not pynetdicom) and the TLS listener's tests, which run both ways already.
KIOSK_FAST_PATH=false exec .venv/bin/python -m pytest tests/net \
    tests/outbox/test_outbox_delivery.py \
    --ignore=tests/net/test_net_stow.py --ignore=tests/net/test_listener_tls.py
