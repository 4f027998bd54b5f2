#!/usr/bin/env bash
# Start the kiosk on a fresh Debian/Ubuntu machine, with embedded demo peers
# (a PACS and a worklist server) so it works with no hospital network.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh
exec .venv/bin/kiosk demo "$@"
