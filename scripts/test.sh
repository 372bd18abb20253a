#!/usr/bin/env bash
# The README's test command: unit tests (no root) and privileged tests (root,
# each in throwaway network namespaces), with node's runner and an explicit
# file list (node 20 neither globs nor finds .ts files by itself).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f bpf/bpf_host.o ] || make -C bpf >/dev/null
shopt -s nullglob
files=(test/unit/*.test.ts test/privileged/*.test.ts)
if [ "$#" -gt 0 ]; then files=("$@"); fi
exec node --import tsx --test --test-concurrency=1 "${files[@]}"
