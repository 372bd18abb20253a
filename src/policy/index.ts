// The policy engine: documents -> validated policies -> per-subject policy map
// entries, and the trace that explains a verdict. Pure: no kernel, no store,
// no files; imports only src/shared.
export * from './types.ts';
export * from './labels.ts';
export * from './selector.ts';
export * from './cidr.ts';
export * from './ports.ts';
export * from './document.ts';
export * from './compute.ts';
export * from './trace.ts';
