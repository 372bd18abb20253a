#!/usr/bin/env bash
# The main job, from a fresh machine: installs what is missing, builds, and
# brings up the lab (2 nodes x 2 pods, embedded SQLite store, one agent per
# node), then runs the connectivity test against it and shows its status.
# Arguments go to `membrane lab up` (e.g. --nodes 3 --pods-per-node 2 --store etcd).
# Remove it with: sudo scripts/down.sh   (= bin/membrane lab down)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
make -s -C bpf
make -s -C cni
# The JavaScript bin/membrane runs (dist/cli/; bin/membrane refuses a stale one).
node scripts/build.mjs
node ui/build.mjs
./bin/membrane lab up "$@"
echo
./bin/membrane lab status
echo
./bin/membrane connectivity test
echo
echo "explore: bin/membrane lab exec pod-1-1 -- ping -c1 <ip of pod-2-1>"
echo "         ip netns exec lab-node-1 bin/membrane datapath explain"
echo "remove:  scripts/down.sh"
