// The runtime side of CNI lives in src/cni/runtime.ts (the lab and the
// benchmarks use it too); re-exported so test files keep one import path.
export * from '../../src/cni/runtime.ts';
