// Public API of the eBPF layer (libbpf through koffi). Everything that
// touches the bpf() syscall or tc netlink for BPF goes through here.
export { BpfObject, type BpfObjectOptions } from './object.ts';
export { constantPatches, type ConstantValue } from './constants.ts';
export { BpfMap, mapInfoByFd, type CreateMapOptions, type UpdateFlag } from './map.ts';
export { BpfProgram } from './program.ts';
export { ElfObject, type ElfMap, type ElfProgram, type ElfSection, type ElfSymbol, type ElfVariable } from './elf.ts';
export {
  Btf, BTF_KIND, btfKindName, parseBtf, type BtfConfigVar, type BtfDatasecVar, type BtfMapDef, type BtfMember, type BtfStruct, type BtfType,
} from './btf.ts';
export { VerifierError, summarizeVerifierLog } from './verifier-error.ts';
export { LibbpfError } from './libbpf-error.ts';
export {
  BPF_FS_MAGIC, ensureBpffs, isBpffs, listPins, openPinnedFd, pinExists, pinFd, removePinTree, unpin,
} from './pin.ts';
export { attachTcx, attachTcxAsync, detachTcx, pinnedTcxLink, tcxAttachType, type AttachTcxOptions, type TcDirection } from './attach/attach-tcx.ts';
export { attachTcLegacy, destroyClsact, detachTcLegacy, queryTcLegacy, type TcLegacyTarget } from './attach/attach-tc-legacy.ts';
export { interfaces, listAttachments, queryTcx, type Attachment, type NetDevice, type TcHook } from './query.ts';
export { progTestRun, type TestRunOptions, type TestRunResult } from './test-run.ts';
export { haveTcx, requireTcx } from './features.ts';
export { linkInfoByFd, progFullName, progInfoByFd, progNameById } from './info.ts';
export { parseCpuList, possibleCpus } from './cpus.ts';
export { MAP_F_NO_PREALLOC, MAP_TYPE, mapTypeName } from './native/structs.ts';
export { closeFd, libbpfLinesSince, libbpfMark } from './native/libbpf.ts';
