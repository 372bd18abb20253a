// The cluster drawn as the seed draws a node: pods on top, each pod's lxc
// device below it, the host stack, cilium_host / cilium_net (a veth pair)
// and cilium_vxlan, the underlay device at the bottom, and the underlay
// joining the nodes. Every device box lists the programs attached to it (as
// `bpf net` shows them). The positions are fixed by the structure, so the
// layout is computed here, not searched for: the same cluster always looks
// the same, which is what a reader comparing it with the seed's pictures needs.
//
// Paths (flows, traces) are polylines through the anchors of the devices
// they crossed; each carries data-devices="node/device,..." for tests and
// tooltips.
import { normPoint, type Flow, type TraceResult, type UiDevice, type UiNode, type UiPod, type UiTopology } from './model.ts';

const SVG = 'http://www.w3.org/2000/svg';
const POD_W = 136;
const POD_GAP = 14;
const NODE_PAD = 18;
const NODE_GAP = 60;
const NODE_H = 500;
const TOP = 10;

interface Box { x: number; y: number; w: number; h: number }
export interface Anchor { x: number; y: number }

export interface Layout {
  width: number;
  height: number;
  /** "node/device" and "node/pod:NAME" -> box. */
  boxes: Map<string, Box>;
  nodes: Map<string, Box>;
  underlayY: number;
}

function el<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number> = {}, text?: string): SVGElementTagNameMap[K] {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

export function layout(t: UiTopology): Layout {
  const boxes = new Map<string, Box>();
  const nodes = new Map<string, Box>();
  let x = 20;
  for (const n of t.nodes) {
    const lxcs = n.pods.length;
    const w = Math.max(470, NODE_PAD * 2 + lxcs * POD_W + Math.max(0, lxcs - 1) * POD_GAP);
    const nb = { x, y: TOP, w, h: NODE_H };
    nodes.set(n.name, nb);
    n.pods.forEach((p, i) => {
      const px = x + NODE_PAD + i * (POD_W + POD_GAP);
      boxes.set(`${n.name}/pod:${p.name}`, { x: px, y: TOP + 52, w: POD_W, h: 64 });
      boxes.set(`${n.name}/${p.lxc}`, { x: px, y: TOP + 150, w: POD_W, h: 58 });
    });
    boxes.set(`${n.name}/cilium_host`, { x: x + NODE_PAD, y: TOP + 262, w: 180, h: 70 });
    boxes.set(`${n.name}/cilium_net`, { x: x + NODE_PAD, y: TOP + 356, w: 180, h: 52 });
    // Native routing has no overlay device: pods' packets to other nodes leave through the underlay device.
    if (n.routingMode !== 'native' || n.devices.some((d) => d.name === 'cilium_vxlan')) boxes.set(`${n.name}/cilium_vxlan`, { x: x + w - NODE_PAD - 200, y: TOP + 262, w: 200, h: 70 });
    const u = n.devices.find((d) => d.role === 'underlay');
    boxes.set(`${n.name}/${u?.name ?? 'eth0'}`, { x: x + w - NODE_PAD - 200, y: TOP + 420, w: 200, h: 52 });
    x += w + NODE_GAP;
  }
  return { width: Math.max(x - NODE_GAP + 20, 600), height: TOP + NODE_H + 70, boxes, nodes, underlayY: TOP + NODE_H + 22 };
}

const center = (b: Box): Anchor => ({ x: b.x + b.w / 2, y: b.y + b.h / 2 });

function programLines(d: UiDevice): string[] {
  const by = (hook: 'ingress' | 'egress') => d.programs.filter((p) => p.hook === hook).map((p) => p.name);
  const out: string[] = [];
  const i = by('ingress');
  const e = by('egress');
  if (i.length) out.push(`in: ${i.join(', ')}`);
  if (e.length) out.push(`eg: ${e.join(', ')}`);
  return out;
}

function drawDevice(g: SVGGElement, node: string, d: UiDevice, b: Box): void {
  const dg = el('g', { class: `dev ${d.role}`, 'data-device': `${node}/${d.name}` });
  dg.append(el('rect', { x: b.x, y: b.y, width: b.w, height: b.h }));
  dg.append(el('text', { class: 'dev-name', x: b.x + 6, y: b.y + 15 }, d.name));
  const sub = [d.ifindex !== undefined ? `if ${d.ifindex}` : '', d.addresses[0] ?? '', d.role === 'vxlan' && d.type ? d.type.replace(/^vxlan /, '') : ''].filter(Boolean).join('  ');
  if (sub) dg.append(el('text', { class: 'dev-sub', x: b.x + 6, y: b.y + 28 }, sub));
  programLines(d).forEach((line, i) => dg.append(el('text', { class: 'prog', x: b.x + 6, y: b.y + 41 + i * 12 }, line)));
  const title = el('title', {}, [`${d.name}${d.type ? ` (${d.type})` : ''}`, d.mtu ? `mtu ${d.mtu}` : '', ...d.addresses,
    ...d.programs.map((p) => `${p.hook}: ${p.name} (${p.mode}${p.id !== undefined ? ` prog ${p.id}` : ''})`)].filter(Boolean).join('\n'));
  dg.append(title);
  g.append(dg);
}

function drawPod(g: SVGGElement, p: UiPod, b: Box, identities: Map<number, string[]>): void {
  const pg = el('g', { class: 'pod', 'data-pod': `${p.node}/${p.name}` });
  pg.append(el('rect', { x: b.x, y: b.y, width: b.w, height: b.h }));
  pg.append(el('text', { class: 'pod-name', x: b.x + 6, y: b.y + 16 }, p.name));
  pg.append(el('text', { class: 'pod-sub', x: b.x + 6, y: b.y + 30 }, `${p.ip}  ep ${p.endpointID}`));
  pg.append(el('text', { class: 'pod-sub', x: b.x + 6, y: b.y + 43 }, `identity ${p.identity}`));
  const labels = Object.entries(p.labels).map(([k, v]) => `${k}=${v}`).join(',');
  pg.append(el('text', { class: 'pod-sub', x: b.x + 6, y: b.y + 56 }, labels.length > 22 ? `${labels.slice(0, 21)}…` : labels));
  pg.append(el('title', {}, [`${p.namespace ?? 'default'}/${p.name} on ${p.node}`, `IP ${p.ip}`, `endpoint ${p.endpointID}, lxc ${p.lxc}`,
    `identity ${p.identity}: ${(identities.get(p.identity) ?? []).join(' ')}`, `labels: ${labels}`].join('\n')));
  g.append(pg);
}

/** Draws the whole topology into `svg` (replacing what was there); returns the layout for paths. */
export function renderTopology(svg: SVGSVGElement, t: UiTopology): Layout {
  const L = layout(t);
  svg.replaceChildren();
  svg.setAttribute('width', String(L.width));
  svg.setAttribute('height', String(L.height));
  svg.setAttribute('viewBox', `0 0 ${L.width} ${L.height}`);
  const defs = el('defs');
  for (const [id, color] of [['arrow-ok', '#1f8a4c'], ['arrow-trace', '#1c64d6']] as const) {
    const m = el('marker', { id, viewBox: '0 0 10 10', refX: 8, refY: 5, markerWidth: 5, markerHeight: 5, orient: 'auto-start-reverse' });
    m.append(el('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: color }));
    defs.append(m);
  }
  svg.append(defs);
  const identities = new Map(t.identities.map((i) => [i.id, i.labels]));
  const base = el('g', { id: 'base' });
  // The underlay: one bar under every node, each node's underlay device joined to it.
  if (t.nodes.length) {
    base.append(el('rect', { class: 'underlay-bar', x: 10, y: L.underlayY, width: L.width - 20, height: 20, rx: 4 }));
    const native = t.nodes.every((n) => n.routingMode === 'native');
    base.append(el('text', { class: 'underlay-label', x: 18, y: L.underlayY + 14 },
      native ? 'underlay (node network): pod CIDRs routed to their nodes\' IPs' : 'underlay (node network): VXLAN UDP between the nodes\' underlay devices'));
  }
  for (const n of t.nodes) {
    const nb = L.nodes.get(n.name)!;
    const g = el('g', { class: `node ${n.reachable ? 'reachable' : 'unreachable'}`, 'data-node': n.name });
    g.append(el('rect', { class: 'node-box', x: nb.x, y: nb.y, width: nb.w, height: nb.h, rx: 10 }));
    g.append(el('text', { class: 'node-title', x: nb.x + 12, y: nb.y + 20 }, n.name));
    g.append(el('text', { class: 'node-sub', x: nb.x + 12, y: nb.y + 36 },
      [n.nodeIP && `node ${n.nodeIP}`, n.podCIDR && `pods ${n.podCIDR}`, n.routerIP && `router ${n.routerIP}`, n.routingMode === 'native' && 'native routing'].filter(Boolean).join('   ')));
    const state = n.reachable ? 'agent ok' : `agent unreachable${n.unreachableSince ? ` since ${new Date(n.unreachableSince).toLocaleTimeString()}` : ''}`;
    const st = el('text', { class: `node-state ${n.reachable ? 'ok' : 'bad'}`, x: nb.x + nb.w - 12, y: nb.y + 20, 'text-anchor': 'end' }, state);
    if (n.error) st.append(el('title', {}, n.error));
    g.append(st);
    // The host stack: what the kernel routes between the lxc devices and cilium_host.
    const stackY = nb.y + 236;
    g.append(el('line', { class: 'stack', x1: nb.x + 10, x2: nb.x + nb.w - 10, y1: stackY, y2: stackY }));
    g.append(el('text', { class: 'stack-label', x: nb.x + 14, y: stackY - 5 }, 'host network stack (routes via cilium_host)'));
    const byName = new Map(n.devices.map((d) => [d.name, d]));
    const wire = (a: string, b: string, cls: string) => {
      const A = L.boxes.get(`${n.name}/${a}`);
      const B = L.boxes.get(`${n.name}/${b}`);
      if (!A || !B) return;
      const up = A.y < B.y;
      g.append(el('line', { class: `wire ${cls}`, x1: A.x + A.w / 2, y1: up ? A.y + A.h : A.y, x2: B.x + B.w / 2, y2: up ? B.y : B.y + B.h }));
    };
    for (const p of n.pods) {
      wire(`pod:${p.name}`, p.lxc, 'veth');
      const lb = L.boxes.get(`${n.name}/${p.lxc}`)!;
      g.append(el('line', { class: 'stack', x1: lb.x + lb.w / 2, x2: lb.x + lb.w / 2, y1: lb.y + lb.h, y2: stackY }));
    }
    const hb = L.boxes.get(`${n.name}/cilium_host`)!;
    g.append(el('line', { class: 'stack', x1: hb.x + hb.w / 2, x2: hb.x + hb.w / 2, y1: stackY, y2: hb.y }));
    wire('cilium_host', 'cilium_net', 'veth');
    g.append(el('text', { class: 'stack-label', x: hb.x + hb.w / 2 + 6, y: hb.y + hb.h + 15 }, 'veth pair'));
    const u = n.devices.find((d) => d.role === 'underlay')?.name ?? 'eth0';
    wire('cilium_vxlan', u, 'bpf');
    const vb = L.boxes.get(`${n.name}/cilium_vxlan`);
    if (vb) g.append(el('text', { class: 'stack-label', x: vb.x + vb.w / 2 + 6, y: vb.y + vb.h + 15 }, `VXLAN, UDP ${n.tunnelPort ?? 8472}`));
    const ub = L.boxes.get(`${n.name}/${u}`)!;
    g.append(el('line', { class: 'wire', x1: ub.x + ub.w / 2, x2: ub.x + ub.w / 2, y1: ub.y + ub.h, y2: L.underlayY }));
    for (const p of n.pods) drawPod(g, p, L.boxes.get(`${n.name}/pod:${p.name}`)!, identities);
    for (const [key, b] of L.boxes) {
      const [node, dev] = [key.slice(0, key.indexOf('/')), key.slice(key.indexOf('/') + 1)];
      if (node !== n.name || dev.startsWith('pod:')) continue;
      // A device the server could not read (no netns here): drawn from what the agent says (the underlay's node IP).
      const d = byName.get(dev) ?? { name: dev, role: dev === u ? 'underlay' as const : dev.startsWith('lxc') ? 'lxc' as const : 'host' as const,
        addresses: dev === u && n.nodeIP ? [n.nodeIP] : [], programs: [] };
      drawDevice(g, n.name, d, b);
    }
    if (n.devicesError) g.append(el('text', { class: 'node-sub', x: nb.x + 12, y: nb.y + nb.h - 8 }, `devices: ${n.devicesError}`));
    base.append(g);
  }
  svg.append(base);
  svg.append(el('g', { id: 'paths' }));
  return L;
}

/** Pods by IP across the cluster. */
export function podIndex(t: UiTopology): Map<string, UiPod> {
  return new Map(t.nodes.flatMap((n) => n.pods.map((p) => [p.ip, p] as const)));
}

interface Step { key: string; at: Anchor }

function underlayOf(n: UiNode | undefined): string {
  return n?.devices.find((d) => d.role === 'underlay')?.name ?? 'eth0';
}

/** The device a hop was at: fixed by the observation point where it names one device, else by the interface, else by the pods. */
function deviceOfHop(node: UiNode, point: string, ifname: string | undefined, src?: UiPod, dst?: UiPod): string | undefined {
  const p = normPoint(point);
  const has = (d?: string) => (d && node.devices.some((x) => x.name === d) ? d : undefined);
  switch (p) {
    case 'TO_OVERLAY': case 'FROM_OVERLAY': return 'cilium_vxlan';
    case 'TO_STACK': case 'TO_HOST': case 'FROM_HOST': return has(ifname) ?? 'cilium_host';
    case 'FROM_ENDPOINT': return has(ifname) ?? (src?.node === node.name ? src.lxc : undefined);
    case 'TO_ENDPOINT': case 'FROM_STACK': return (dst?.node === node.name ? dst.lxc : undefined) ?? has(ifname);
    case 'FROM_NETWORK': case 'TO_NETWORK': return underlayOf(node);
    default: return has(ifname);
  }
}

/** The steps of one node's flow: source pod, the devices of its hops, then where it went (the underlay, the destination pod). */
export function flowSteps(t: UiTopology, L: Layout, f: Flow, pods = podIndex(t)): Step[] {
  const node = t.nodes.find((n) => n.name === f.node_name);
  if (!node) return [];
  const src = f.IP ? pods.get(f.IP.source) : undefined;
  const dst = f.IP ? pods.get(f.IP.destination) : undefined;
  const keys: string[] = [];
  const push = (k: string | undefined) => { if (k && L.boxes.has(k) && keys[keys.length - 1] !== k) keys.push(k); };
  const hops = f.hops ?? [];
  const first = hops[0] ? normPoint(hops[0].point) : '';
  // At trace level 1 the datapath reports a connection's decisive points only (to-overlay, to-endpoint), not
  // every point: where the packet necessarily came from is drawn too. A local pod's packet enters through its
  // lxc; in tunnel mode a remote pod's packet arrives on the underlay and leaves cilium_vxlan.
  if (src?.node === node.name && first !== 'FROM_HOST' && first !== 'FROM_OVERLAY') {
    push(`${node.name}/pod:${src.name}`);
    push(`${node.name}/${src.lxc}`);
  }
  if (first === 'FROM_OVERLAY' || (src && src.node !== node.name && first !== 'FROM_HOST')) {
    push(`${node.name}/${underlayOf(node)}`);
    // With native routing the packet comes in on the underlay device itself, not out of the overlay.
    if (node.routingMode !== 'native' || first === 'FROM_OVERLAY') push(`${node.name}/cilium_vxlan`);
  }
  let last = '';
  for (const h of hops) {
    const d = deviceOfHop(node, h.point, h.ifname, src, dst);
    if (d) push(`${node.name}/${d}`);
    last = normPoint(h.point);
  }
  // Native routing: to a pod of another node through the stack, out of the underlay device.
  if ((last === 'TO_STACK' || last === 'TO_NETWORK') && dst && dst.node !== node.name) {
    push(`${node.name}/${underlayOf(node)}`);
    push(`${dst.node}/${underlayOf(t.nodes.find((n) => n.name === dst.node))}`);
  }
  if (last === 'TO_OVERLAY') {
    push(`${node.name}/${underlayOf(node)}`);
    // On to the destination's node: the encapsulated packet crosses the underlay.
    if (dst && dst.node !== node.name) push(`${dst.node}/${underlayOf(t.nodes.find((n) => n.name === dst.node))}`);
  }
  if (last === 'TO_ENDPOINT' && dst?.node === node.name) push(`${node.name}/pod:${dst.name}`);
  return keys.map((k) => ({ key: k, at: center(L.boxes.get(k)!) }));
}

/** The steps of a `membrane trace`: its hops across nodes, through both underlay devices where it changes node. */
export function traceSteps(t: UiTopology, L: Layout, r: TraceResult, pods = podIndex(t)): Step[] {
  const src = pods.get(r.source.ip);
  const dst = pods.get(r.destination.ip);
  const keys: string[] = [];
  const push = (k: string | undefined) => { if (k && L.boxes.has(k) && keys[keys.length - 1] !== k) keys.push(k); };
  if (src) push(`${src.node}/pod:${src.name}`);
  let prevNode: string | undefined = src?.node;
  for (const h of r.hops.filter((x) => !x.reply)) {
    const node = t.nodes.find((n) => n.name === h.node);
    if (!node) continue;
    if (prevNode && prevNode !== node.name) {
      push(`${prevNode}/${underlayOf(t.nodes.find((n) => n.name === prevNode))}`);
      push(`${node.name}/${underlayOf(node)}`);
    }
    prevNode = node.name;
    const d = deviceOfHop(node, h.point, h.device, src, dst);
    if (d) push(`${node.name}/${d}`);
  }
  if (r.verdict === 'DELIVERED' && dst) push(`${dst.node}/pod:${dst.name}`);
  // A node's host as the destination: across the underlay to its node (if another), into its stack by cilium_host.
  const hostDst = !dst && r.destination.node ? t.nodes.find((n) => n.name === r.destination.node) : undefined;
  if (r.verdict === 'DELIVERED' && hostDst) {
    if (prevNode && prevNode !== hostDst.name) {
      push(`${prevNode}/${underlayOf(t.nodes.find((n) => n.name === prevNode))}`);
      push(`${hostDst.name}/${underlayOf(hostDst)}`);
    } else push(`${hostDst.name}/cilium_host`);
  }
  return keys.map((k) => ({ key: k, at: center(L.boxes.get(k)!) }));
}

/**
 * The polyline through the steps. Between two nodes it runs down to the
 * underlay bar and along it, as the encapsulated packet does.
 */
function pathD(steps: Step[], L: Layout, offset: number): string {
  const pts: Anchor[] = [];
  for (let i = 0; i < steps.length; i++) {
    const s = steps[i]!;
    const prev = steps[i - 1];
    if (prev && prev.key.split('/')[0] !== s.key.split('/')[0]) {
      pts.push({ x: prev.at.x, y: L.underlayY + 10 }, { x: s.at.x, y: L.underlayY + 10 });
    }
    pts.push(s.at);
  }
  return pts.map((p, i) => `${i ? 'L' : 'M'} ${(p.x + offset).toFixed(1)} ${(p.y + offset).toFixed(1)}`).join(' ');
}

export interface DrawnPath { g: SVGGElement; devices: string[] }

/** Draws one path; `label` at its end (a drop's reason), red for a drop, blue for a trace. */
export function drawPath(svg: SVGSVGElement, L: Layout, steps: Step[], kind: 'forwarded' | 'dropped' | 'trace', label?: string, offset = 0): DrawnPath | undefined {
  const layer = svg.querySelector('#paths');
  if (!layer || !steps.length) return undefined;
  const devices = steps.map((s) => s.key);
  const g = el('g', { class: `path ${kind}`, 'data-devices': devices.join(',') });
  if (steps.length > 1) g.append(el('path', { class: `flow-path ${kind}`, d: pathD(steps, L, offset) }));
  const end = steps[steps.length - 1]!.at;
  if (kind === 'dropped') {
    const r = 7;
    g.append(el('line', { class: 'drop-mark', x1: end.x - r, y1: end.y - r, x2: end.x + r, y2: end.y + r }));
    g.append(el('line', { class: 'drop-mark', x1: end.x - r, y1: end.y + r, x2: end.x + r, y2: end.y - r }));
  }
  if (label) {
    // Near the right edge the label runs leftwards, so it is never cut off.
    const left = end.x > L.width - 9 * label.length;
    // A trace's label sits above a flow's, which may end at the same device.
    g.append(el('text', { class: kind === 'trace' ? 'trace-label' : 'drop-label', x: left ? end.x - 10 : end.x + 10, y: end.y - (kind === 'trace' ? 28 : 12), 'text-anchor': left ? 'end' : 'start' }, label));
  }
  layer.append(g);
  return { g, devices };
}
