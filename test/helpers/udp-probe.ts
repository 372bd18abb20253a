// The UDP first-packet probe lives in src/connectivity/udp-probe.ts (the
// benchmarks use it too); re-exported so test files keep one import path.
export { UdpProbe } from '../../src/connectivity/udp-probe.ts';
