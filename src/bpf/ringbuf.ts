// Reading a BPF_MAP_TYPE_RINGBUF map (e.g. cilium_events) from userspace
// through libbpf's ring_buffer API: ring_buffer__new mmaps the map's consumer
// and producer pages, ring_buffer__consume walks every committed record and
// hands it to a sample callback, then advances the consumer position, so each
// record is returned once. Only synchronous draining (consume) is offered:
// the callers so far (tests, and later a monitor on a timer) never block in
// epoll, which would stall Node's event loop.
//
// The callback is a koffi-registered C function pointer. libbpf calls it only
// from inside ring_buffer__consume, i.e. on this thread while consume() runs,
// so one callback per reader can simply push copies of the records into the
// array consume() returns.
import koffi from 'koffi';
import { KernelError, MembraneError } from '../shared/errors.ts';
import type { BpfMap } from './map.ts';
import { errno, readNative, type Ptr } from './native/libbpf.ts';
import { MAP_TYPE } from './native/structs.ts';

const lib = koffi.load('libbpf.so.1');

const SampleFn = koffi.proto('int membrane_ringbuf_sample_fn(void *ctx, void *data, size_t size)');
const ringBufferNew = lib.func('void *ring_buffer__new(int map_fd, membrane_ringbuf_sample_fn *sample_cb, void *ctx, void *opts)') as
  (fd: number, cb: bigint, ctx: null, opts: null) => Ptr | null;
const ringBufferConsume = lib.func('int ring_buffer__consume(void *rb)') as (rb: Ptr) => number;
const ringBufferFree = lib.func('void ring_buffer__free(void *rb)') as (rb: Ptr) => void;

/** What the sample callback of one reader writes into while consume() runs. */
interface Sink {
  records: Buffer[];
  error: unknown;
}

export class RingBufferReader {
  readonly name: string;
  #rb: Ptr | null;
  #map: BpfMap | null;
  #cb: bigint | null;
  readonly #sink: Sink;

  private constructor(name: string, map: BpfMap, rb: Ptr, cb: bigint, sink: Sink) {
    this.name = name;
    this.#map = map;
    this.#rb = rb;
    this.#cb = cb;
    this.#sink = sink;
  }

  /**
   * Opens a reader on `map` (a RINGBUF). The reader keeps its own dup of the
   * map fd, so the caller may close `map` afterwards; close() the reader.
   * Throws MembraneError E_BPF_MAP for another map type, KernelError when
   * libbpf cannot mmap the ring.
   */
  static open(map: BpfMap): RingBufferReader {
    if (map.type !== MAP_TYPE.RINGBUF) {
      throw new MembraneError(`open ring buffer ${map.name}`, { code: 'E_BPF_MAP', cause: `map is ${map.typeName}, not ringbuf` });
    }
    const own = map.dup();
    const sink: Sink = { records: [], error: undefined };
    // The record pointer is only valid during the callback: copy it out.
    const cb = koffi.register((_ctx: unknown, data: Ptr, size: number | bigint): number => {
      try {
        sink.records.push(readNative(data, Number(size)));
        return 0;
      } catch (err) {
        // Never throw into C; a negative return stops the walk and consume() reports it.
        sink.error = err;
        return -1;
      }
    }, koffi.pointer(SampleFn));
    const rb = ringBufferNew(own.fd, cb, null, null);
    if (!rb) {
      const e = errno();
      koffi.unregister(cb);
      own.close();
      throw new KernelError(`open ring buffer ${map.name}: ring_buffer__new`, e);
    }
    return new RingBufferReader(map.name, own, rb, cb, sink);
  }

  /** Every record committed since the last call (copies, oldest first); [] if none. Never blocks. */
  consume(): Buffer[] {
    if (!this.#rb) throw new MembraneError(`read ring buffer ${this.name}`, { code: 'E_CLOSED', cause: 'reader is closed' });
    const sink = this.#sink;
    sink.records = [];
    sink.error = undefined;
    const rc = ringBufferConsume(this.#rb);
    const out = sink.records;
    sink.records = [];
    if (sink.error !== undefined) throw new MembraneError(`read ring buffer ${this.name}`, { cause: sink.error });
    if (rc < 0) throw new KernelError(`read ring buffer ${this.name}: ring_buffer__consume`, rc);
    return out;
  }

  /** Unmaps the ring, releases the callback and the map fd. Idempotent. */
  close(): void {
    if (this.#rb) ringBufferFree(this.#rb);
    this.#rb = null;
    if (this.#cb !== null) koffi.unregister(this.#cb);
    this.#cb = null;
    this.#map?.close();
    this.#map = null;
  }
}
