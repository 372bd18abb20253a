// The node's datapath events as one consumer reads them: the records of the
// cilium_events ring buffer, decoded (maps/events.ts), and the exact count of
// records the programs could not write because the ring was full
// (cilium_events_lost, per CPU and event type, bpf/lib/maps.h).
//
// A ring buffer has one consumer position: every record is returned to
// whichever reader consumes first, so a node should have one reader (the
// agent's event pipeline) that hands the events on. consume() never blocks:
// call it on a timer. A record this build cannot decode (another EVENT_VERSION
// after an upgrade, a truncated record) is counted in undecodable() and
// skipped, never thrown.
import type { BpfMap } from '../bpf/index.ts';
import { RingBufferReader } from '../bpf/ringbuf.ts';
import { decodeEvent, EVENT_TYPE_NAMES, EVENTS_LOST_MAP_NAME, EVENTS_LOST_TYPES, EVENTS_MAP_NAME, type DatapathEvent } from './maps/events.ts';
import { openNodeMap } from './node-maps.ts';

export interface LostEvents {
  /** Records lost since the reader was opened, all types. */
  total: bigint;
  /** The same by event type: 'drop', 'debug', 'trace', 'policy-verdict' (always present), 'type-N' for others that lost any. */
  byType: Record<string, bigint>;
}

/** Per event type, the records lost since the map was made (summed over CPUs). */
function readLost(map: BpfMap): bigint[] {
  const key = Buffer.alloc(4);
  const counts: bigint[] = [];
  for (let type = 0; type < EVENTS_LOST_TYPES; type++) {
    key.writeUInt32LE(type);
    let sum = 0n;
    for (const slot of map.lookupPerCpu(key) ?? []) sum += slot.readBigUInt64LE(0);
    counts.push(sum);
  }
  return counts;
}

/** Lost counts as LostEvents: `now` minus `base` per type (base: zeroes for the counts since the map was made). */
function lostEvents(now: bigint[], base?: readonly bigint[]): LostEvents {
  const byType: Record<string, bigint> = {};
  for (const name of Object.values(EVENT_TYPE_NAMES)) byType[name] = 0n;
  let total = 0n;
  now.forEach((count, type) => {
    const n = count - (base?.[type] ?? 0n);
    if (n === 0n && !EVENT_TYPE_NAMES[type]) return;
    byType[EVENT_TYPE_NAMES[type] ?? `type-${type}`] = n;
    total += n;
  });
  return { total, byType };
}

/**
 * Records lost since the node's maps were made (the counter is never reset:
 * it survives agent restarts), for whoever wants the total without reading
 * the ring: metrics, `monitor` start-up lines. Throws E_NOT_INITIALIZED
 * before `datapath init`.
 */
export function readEventsLost(nodeDir: string): LostEvents {
  const map = openNodeMap(nodeDir, EVENTS_LOST_MAP_NAME);
  try {
    return lostEvents(readLost(map));
  } finally {
    map.close();
  }
}

export class EventReader {
  readonly #ring: RingBufferReader;
  readonly #lostMap: BpfMap;
  /** cilium_events_lost when the reader was opened: lost() counts from there. */
  readonly #lostBase: bigint[];
  #undecodable = 0;
  #closed = false;

  private constructor(ring: RingBufferReader, lostMap: BpfMap) {
    this.#ring = ring;
    this.#lostMap = lostMap;
    this.#lostBase = readLost(lostMap);
  }

  /**
   * Opens the reader of the node whose pin directory is `nodeDir`
   * (`<bpffsRoot>/<nodeName>`). Throws E_NOT_INITIALIZED when the node's
   * maps are not pinned (no `datapath init` yet). close() it.
   */
  static open(nodeDir: string): EventReader {
    const events = openNodeMap(nodeDir, EVENTS_MAP_NAME);
    let ring: RingBufferReader;
    try {
      ring = RingBufferReader.open(events);
    } finally {
      events.close(); // the reader holds its own dup of the fd
    }
    let lost: BpfMap;
    try {
      lost = openNodeMap(nodeDir, EVENTS_LOST_MAP_NAME);
    } catch (e) {
      ring.close();
      throw e;
    }
    return new EventReader(ring, lost);
  }

  /** Every record now in the ring, decoded, oldest first; [] if none. Never blocks. */
  consume(): DatapathEvent[] {
    const out: DatapathEvent[] = [];
    for (const rec of this.#ring.consume()) {
      try {
        out.push(decodeEvent(rec));
      } catch {
        this.#undecodable++;
      }
    }
    return out;
  }

  /** Records the programs could not write since open() (the ring was full): exact, by type. */
  lost(): LostEvents {
    return lostEvents(readLost(this.#lostMap), this.#lostBase);
  }

  /** Records skipped since open() because they could not be decoded (another version, truncated). */
  undecodable(): number {
    return this.#undecodable;
  }

  /** Releases the ring and the map. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#ring.close();
    this.#lostMap.close();
  }
}
