#!/usr/bin/env bash
# Removes what scripts/up.sh made: the demo netns (and with it every device
# and attachment), its pins and its config file.
set -euo pipefail
ip netns del membrane-demo 2>/dev/null || true
rm -rf /run/membrane/bpffs/demo-1 /run/membrane/demo-node.yaml
echo "membrane demo removed"
