// HTTP from this process to a server inside another network namespace
// (the lab's etcd listens on the underlay bridge, unreachable from the root
// netns): the TCP socket is created inside that netns through libc, then
// handed to Node, which connects it from wherever it runs (a socket's netns
// is fixed when it is created). No process spawned per request.
import { request } from 'node:http';
import net from 'node:net';
import { check, libc } from '../shared/libc.ts';
import { withNetns } from '../shared/netns.ts';

const AF_INET = 2;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;

/** A TCP socket created in `netns`, not yet connected. The caller owns it (destroy() closes the fd). */
export function tcpSocketIn(netns: string): net.Socket {
  const fd = withNetns(netns, () => check(`socket in netns ${netns}`, libc.socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)));
  return new net.Socket({ fd });
}

/** GET `url` (http://IP:port/path) from inside `netns`; resolves with status and body, rejects on error or after `timeoutMs`. */
export function httpGetIn(netns: string, url: string, timeoutMs = 1000): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({
      host: u.hostname, port: Number(u.port || 80), path: u.pathname + u.search, method: 'GET',
      createConnection: () => tcpSocketIn(netns).connect(Number(u.port || 80), u.hostname),
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}
