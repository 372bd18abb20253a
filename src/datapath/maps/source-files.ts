// Source file ids carried by drop events and metrics keys, mirroring
// SOURCE_FILES in bpf/lib/source_files.h. test/unit/maps-codes.test.ts parses
// the header, fails if the lists differ, and fails if a bpf/*.c or bpf/lib/*.h
// is missing from it.

export interface SourceFileInfo {
  readonly id: number;
  /** Basename as the C compiler's __FILE_NAME__, e.g. "bpf_lxc.c". */
  readonly name: string;
}

export const SOURCE_FILES: readonly SourceFileInfo[] = Object.freeze([
  { id: 1, name: 'bpf_host.c' },
  { id: 2, name: 'bpf_lxc.c' },
  { id: 3, name: 'bpf_overlay.c' },
  { id: 4, name: 'bpf_alignchecker.c' },
  { id: 10, name: 'common.h' },
  { id: 11, name: 'arp.h' },
  { id: 12, name: 'eth.h' },
  { id: 13, name: 'ipv4.h' },
  { id: 14, name: 'local_delivery.h' },
  { id: 15, name: 'encap.h' },
  { id: 16, name: 'lookup.h' },
  { id: 17, name: 'tailcall.h' },
  { id: 18, name: 'drop.h' },
  { id: 19, name: 'events.h' },
  { id: 20, name: 'metrics.h' },
  { id: 21, name: 'identity.h' },
  { id: 22, name: 'maps.h' },
  { id: 23, name: 'source_files.h' },
  { id: 24, name: 'drop_reasons.h' },
  { id: 25, name: 'trace_points.h' },
].map((f) => Object.freeze(f)));

const byId = new Map(SOURCE_FILES.map((f) => [f.id, f]));

/** The file's basename, or "file-N" for an id this build does not know. */
export function sourceFileName(id: number): string {
  return byId.get(id)?.name ?? `file-${id}`;
}

/** Repository path of the file: programs live in bpf/, helpers in bpf/lib/. */
export function sourceFilePath(id: number): string | undefined {
  const f = byId.get(id);
  if (!f) return undefined;
  return f.name.endsWith('.c') ? `bpf/${f.name}` : `bpf/lib/${f.name}`;
}

/** "bpf_lxc.c:77" — how drop sites are shown. */
export function formatSourceLocation(file: number, line: number): string {
  return `${sourceFileName(file)}:${line}`;
}
