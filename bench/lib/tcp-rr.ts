// A tiny TCP request/response loop (netperf TCP_RR style: one 1-byte request
// outstanding, the server echoes it, TCP_NODELAY on both ends), run as its
// own process inside a netns by bench/throughput.ts:
//
//   node --import tsx bench/lib/tcp-rr.ts server PORT
//       prints "listening" once bound, echoes one connection, then exits
//   node --import tsx bench/lib/tcp-rr.ts client IP PORT SECONDS
//       prints {"samplesUs":[...]}: one round-trip time per transaction,
//       after 500 warm-up transactions that are not recorded
//
// The RTT includes Node's event loop on both ends (tens of microseconds),
// the same for every setup, so compare setups rather than read it as the
// network's own latency.
import { createConnection, createServer } from 'node:net';

const WARMUP = 500;
const MAX_SAMPLES = 200_000;

function server(port: number): void {
  const srv = createServer((sock) => {
    sock.setNoDelay(true);
    sock.on('data', (d) => sock.write(d));
    sock.on('error', () => { /* client went away */ });
    // One connection only: stop listening; the process exits when this socket closes.
    srv.close();
  });
  srv.listen(port, '0.0.0.0', () => process.stdout.write('listening\n'));
}

function client(ip: string, port: number, seconds: number): void {
  const sock = createConnection({ host: ip, port, noDelay: true });
  const req = Buffer.from([0x2a]);
  const samples = new Float64Array(MAX_SAMPLES);
  let n = 0;
  let done = 0;
  let t0 = 0n;
  let end = 0n;
  const send = () => {
    t0 = process.hrtime.bigint();
    sock.write(req);
  };
  sock.on('connect', send);
  sock.on('data', (d) => {
    // One byte outstanding, so each byte that arrives ends one transaction.
    for (let i = 0; i < d.length; i++) {
      const now = process.hrtime.bigint();
      done++;
      if (done === WARMUP) end = now + BigInt(Math.round(seconds * 1e9));
      else if (done > WARMUP) samples[n++] = Number(now - t0) / 1000;
      if ((done > WARMUP && now >= end) || n >= MAX_SAMPLES) {
        process.stdout.write(JSON.stringify({ samplesUs: Array.from(samples.subarray(0, n), (x) => Math.round(x * 10) / 10) }) + '\n');
        sock.end();
        return;
      }
    }
    send();
  });
  sock.on('error', (e) => {
    process.stderr.write(`tcp-rr client ${ip}:${port}: ${e.message}\n`);
    process.exit(1);
  });
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'server') server(Number(args[0]));
else if (mode === 'client') client(args[0]!, Number(args[1]), Number(args[2]));
else {
  process.stderr.write('usage: tcp-rr.ts server PORT | client IP PORT SECONDS\n');
  process.exit(2);
}
