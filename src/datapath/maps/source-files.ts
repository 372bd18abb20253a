// Source file ids carried by drop events and metrics keys. The list is
// SOURCE_FILES in bpf/lib/source_files.h; generated/bpf-tables.ts carries it
// here (make -C bpf tables regenerates it). test/unit/maps-codes.test.ts fails
// if a bpf/*.c or bpf/lib/*.h has no id.
import { SOURCE_FILE_TABLE } from './generated/bpf-tables.ts';

export interface SourceFileInfo {
  readonly id: number;
  /** Basename as the C compiler's __FILE_NAME__, e.g. "bpf_lxc.c". */
  readonly name: string;
}

export const SOURCE_FILES: readonly SourceFileInfo[] = Object.freeze(
  SOURCE_FILE_TABLE.map(({ id, name }) => Object.freeze({ id, name })),
);

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
