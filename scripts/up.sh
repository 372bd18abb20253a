#!/usr/bin/env bash
# The main job, from a fresh machine: installs what is missing, builds, and
# brings up one Membrane node in a network namespace of its own
# (membrane-demo), then shows `membrane datapath explain` for it.
# Remove it with: sudo scripts/down.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
make -s -C bpf
make -s -C cni
bash scripts/bpffs.sh
ns=membrane-demo
ip netns list | grep -qw "$ns" || { ip netns add "$ns"; ip -n "$ns" link set lo up; }
mkdir -p /run/membrane
cat > /run/membrane/demo-node.yaml <<'YAML'
nodeName: demo-1
routerIP: 10.244.2.161
podCIDR: 10.244.2.0/24
deviceMTU: 9001
remoteNodes:
  - { podCIDR: 10.244.0.0/24, nodeIP: 10.13.1.5 }
  - { podCIDR: 10.244.1.0/24, nodeIP: 10.13.1.6 }
YAML
ip netns exec "$ns" ./bin/membrane datapath init --config /run/membrane/demo-node.yaml
ip netns exec "$ns" ./bin/membrane datapath explain
echo
ip netns exec "$ns" ./bin/membrane bpf net
echo
echo "node demo-1 runs in netns $ns; look around with: sudo ip netns exec $ns ./bin/membrane bpf ipcache list"
echo "remove it with: sudo scripts/down.sh"
