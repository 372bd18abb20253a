// bpf_obj_get_info_by_fd for programs, maps and links, and the lookups by id
// that `bpftool` does to name what is attached.
import { KernelError } from '../shared/errors.ts';
import { addressOf, bpf, closeFd, readNative } from './native/libbpf.ts';
import {
  decodeLinkInfo, decodeMapInfo, decodeProgInfo, encodeProgInfoFuncInfoRequest,
  LINK_INFO_SIZE, MAP_INFO_SIZE, PROG_INFO_SIZE,
  type LinkInfo, type MapInfo, type ProgInfo,
} from './native/structs.ts';

function infoByFd(what: string, fd: number, size: number, req?: Buffer): Buffer {
  const info = req ?? Buffer.alloc(size);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(info.length);
  const rc = bpf.obj_get_info_by_fd(fd, info, len);
  if (rc < 0) throw new KernelError(`get ${what} info (fd ${fd})`, rc);
  return info;
}

/** Type, sizes, flags, name and id of the map behind `fd` (the caller keeps owning `fd`). */
export function mapInfoByFd(fd: number): MapInfo {
  return decodeMapInfo(infoByFd('map', fd, MAP_INFO_SIZE));
}

/** Type, id, tag and (kernel-truncated) name of the program behind `fd`. */
export function progInfoByFd(fd: number): ProgInfo {
  return decodeProgInfo(infoByFd('program', fd, PROG_INFO_SIZE));
}

/** Type, id, program id and (tcx) target of the link behind `fd`. */
export function linkInfoByFd(fd: number): LinkInfo {
  return decodeLinkInfo(infoByFd('link', fd, LINK_INFO_SIZE));
}

/**
 * A program's full name. The kernel keeps 15 characters; like bpftool, a
 * name that long is completed from the program's BTF (its first func_info
 * record names the entry function). Falls back to the kernel name.
 */
export function progFullName(fd: number, info: ProgInfo = progInfoByFd(fd)): string {
  if (info.name.length < 15 || !info.btfId || !info.nrFuncInfo) return info.name;
  const recSize = Math.min(info.funcInfoRecSize || 8, 8);
  const finfo = Buffer.alloc(8); // struct bpf_func_info { insn_off; type_id; }
  let btf: bigint | null = null;
  try {
    infoByFd('program', fd, PROG_INFO_SIZE, encodeProgInfoFuncInfoRequest(recSize, addressOf(finfo)));
    btf = bpf.btf_load_from_kernel_by_id(info.btfId);
    if (!btf) return info.name;
    const t = bpf.btf_type_by_id(btf, finfo.readUInt32LE(4));
    if (!t) return info.name;
    const nameOff = readNative(t, 4).readUInt32LE(0);
    return bpf.btf_name_by_offset(btf, nameOff) || info.name;
  } catch {
    return info.name;
  } finally {
    if (btf) bpf.btf_free(btf);
  }
}

/** Name and id of a loaded program, by id (what bpftool prints next to an attachment). */
export function progNameById(id: number): string | undefined {
  const fd = bpf.prog_get_fd_by_id(id);
  if (fd < 0) return undefined; // unloaded meanwhile
  try {
    return progFullName(fd);
  } finally {
    closeFd(fd);
  }
}
