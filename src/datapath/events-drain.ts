// Reading a node's datapath events (cilium_events, a ring buffer) once, from
// outside the agent: the connectivity test uses it to show that a denied
// flow was dropped with the policy's reason and both identities.
//
// A ring buffer has one consumer position: draining CONSUMES the records, so
// two readers would each see only part of the stream. That is fine while
// nothing else reads the ring. The agent's reader (events-reader.ts, opened
// by NodeDatapath.openEventReader) is the long-lived one: once the agent
// runs it, callers of this should ask the agent instead.
import { BpfMap, pinExists } from '../bpf/index.ts';
import { RingBufferReader } from '../bpf/ringbuf.ts';
import { MembraneError } from '../shared/errors.ts';
import { decodeEvent, EVENTS_MAP_NAME, type DatapathEvent } from './maps/events.ts';
import { globalsDir } from './paths.ts';

export interface DrainResult {
  events: DatapathEvent[];
  /** Records that could not be decoded (another version, truncated): counted, not fatal. */
  undecodable: number;
}

/**
 * Every event committed to the node's cilium_events since the last drain,
 * oldest first. `nodeDir` is the node's pin directory (`<bpffsRoot>/<node>`).
 */
export function drainEvents(nodeDir: string): DrainResult {
  const path = `${globalsDir(nodeDir)}/${EVENTS_MAP_NAME}`;
  if (!pinExists(path)) {
    throw new MembraneError(`read datapath events of ${nodeDir}`, { code: 'E_NOT_INITIALIZED', cause: `${path} is not pinned`, hint: 'is the node\'s agent running?' });
  }
  const map = BpfMap.openPinned(path);
  let reader: RingBufferReader;
  try {
    reader = RingBufferReader.open(map);
  } finally {
    // The reader holds its own dup of the fd.
    map.close();
  }
  try {
    const events: DatapathEvent[] = [];
    let undecodable = 0;
    for (const rec of reader.consume()) {
      try {
        events.push(decodeEvent(rec));
      } catch {
        undecodable++;
      }
    }
    return { events, undecodable };
  } finally {
    reader.close();
  }
}
