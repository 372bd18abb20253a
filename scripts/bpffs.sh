#!/usr/bin/env bash
# Mounts the project's bpffs at /run/membrane/bpffs in the root mount
# namespace, where pins outlive every process (a bpffs mounted inside
# `ip netns exec` dies with that process and takes pinned links with it).
set -euo pipefail
dir=${MEMBRANE_BPFFS:-/run/membrane/bpffs}
mkdir -p "$dir"
if [ "$(stat -f -c %T "$dir")" != bpf_fs ]; then
  mount -t bpf bpffs "$dir"
fi
