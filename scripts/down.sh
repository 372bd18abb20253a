#!/usr/bin/env bash
# Removes the lab scripts/up.sh made (every namespace, device, pin, process and file of it).
set -euo pipefail
cd "$(dirname "$0")/.."
exec ./bin/membrane lab down "$@"
