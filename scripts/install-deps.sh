#!/usr/bin/env bash
# Installs what Membrane needs on a fresh Debian 12 machine (run as root):
# clang for bpf/*.c, libbpf 1.4 + bpftool 7.5 + iproute2 6.15 from
# bookworm-backports (they know tcx; bookworm's 7.1 bpftool cannot show it),
# tools the tests and benchmarks use (openssl: etcd certificates; nsenter,
# setpriv, curl: the install and etcd TLS tests; chromium: the web UI's
# browser test, Debian's build, never a downloaded one), and the npm dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "install-deps: must run as root (apt-get, bpffs, netns)" >&2
  exit 1
fi

backports=/etc/apt/sources.list.d/membrane-backports.list
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo 'deb http://deb.debian.org/debian bookworm-backports main' > "$backports"
fi

need_apt=0
for bin in clang gcc bpftool tcpdump iperf3 etcd jq make openssl curl nsenter setpriv chromium; do
  command -v "$bin" >/dev/null 2>&1 || need_apt=1
done
# bpftool 7.1 and iproute2 6.1 cannot show tcx attachments: require the backports.
bpftool version 2>/dev/null | grep -q 'v7\.[5-9]' || need_apt=1
ip -V 2>/dev/null | grep -q 'iproute2-6\.1[0-9]' || need_apt=1

if [ "$need_apt" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends \
    clang llvm gcc libc6-dev make jq tcpdump iperf3 iputils-ping netcat-openbsd procps psmisc \
    etcd-server etcd-client openssl curl util-linux chromium >/dev/null
  apt-get install -y -qq --no-install-recommends -t bookworm-backports \
    bpftool iproute2 libbpf1 libbpf-dev >/dev/null
fi

# Wanted, not required: tshark (the pcap test reads with it, else with
# tcpdump), podman (CNI backend) and busybox-static for an image made with
# `podman import` (docs/runtimes.md). A machine that cannot reach Debian's
# mirror goes on without them, saying so.
wanted=()
command -v tshark >/dev/null 2>&1 || wanted+=(tshark)
command -v podman >/dev/null 2>&1 || wanted+=(podman)
[ -x /bin/busybox ] || wanted+=(busybox-static)
if [ "${#wanted[@]}" -gt 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${wanted[@]}" >/dev/null; } \
    || echo "install-deps: ${wanted[*]} not installed (apt failed); the tests use tcpdump for pcaps and do not run podman" >&2
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # --prefer-offline: the lockfile's tarballs come from npm's cache when it has them (1 min instead of 4 when the registry is slow or away).
  npm ci --prefer-offline --no-audit --no-fund --loglevel=error
fi
