// The page: one server-sent event stream (/api/events) brings the topology
// when it changes, flows in batches and the state of each node's flow
// stream; the rest is asked for on demand (trace, policy). Drawing is paced
// by animation frames: flows arriving at 1,000/s are kept in a bounded list
// and the table and the paths are redrawn at most a few times a second, so
// the tab never has more work in a frame than a few hundred rows.
import { dropLabel, dropped, dropReasonOf, portOf, protoOf, type Flow, type StreamState, type TraceResult, type UiPod, type UiTopology } from './model.ts';
import { drawPath, flowSteps, podIndex, renderTopology, traceSteps, type Layout } from './topology.ts';

const MAX_FLOWS = 5_000;
const TABLE_ROWS = 100;
/** Paths on the drawing at once; older ones fade out. */
const MAX_PATHS = 24;
const PATH_TTL_MS = 4_000;
const REDRAW_MS = 250;
/** The table is redrawn at most this often: under a flood every row changes on every redraw. */
const TABLE_MS = 500;

const $ = <T extends Element>(sel: string): T => document.querySelector(sel) as T;
const svg = $<SVGSVGElement>('#topology');

interface State {
  topology?: UiTopology;
  layout?: Layout;
  pods: Map<string, UiPod>;
  flows: Flow[];
  received: number;
  skipped: number;
  selected?: Flow;
  trace?: TraceResult;
  dirtyTable: boolean;
  newPaths: Flow[];
  streams: StreamState[];
}

const state: State = { pods: new Map(), flows: [], received: 0, skipped: 0, dirtyTable: false, newPaths: [], streams: [] };

/** What tests and the benchmark read: first render time, frame times, counts. */
const probe = {
  firstRenderMs: undefined as number | undefined,
  frames: [] as number[],
  /** The longest time the page's own drawing work took in one go, while measuring. */
  maxWorkMs: 0,
  measuring: false,
  work(ms: number) { if (this.measuring && ms > this.maxWorkMs) this.maxWorkMs = ms; },
  /** Tasks of the page's main thread over 50 ms (script, style, layout, paint), while measuring: the Long Tasks API. */
  longTasks: [] as number[],
  get flowsReceived() { return state.received; },
  get flowsSkipped() { return state.skipped; },
  startFrames() { this.frames = []; this.maxWorkMs = 0; this.longTasks = []; this.measuring = true; },
  stopFrames() {
    this.measuring = false;
    const f = [...this.frames].sort((a, b) => a - b);
    return { count: f.length, max: f[f.length - 1] ?? 0, p99: f[Math.floor(f.length * 0.99)] ?? 0, median: f[Math.floor(f.length / 2)] ?? 0, over50: f.filter((x) => x > 50).length, maxWorkMs: this.maxWorkMs,
      longTasks: this.longTasks.length, longestTaskMs: Math.max(0, ...this.longTasks) };
  },
};
(window as unknown as { __membrane: typeof probe }).__membrane = probe;
try {
  new PerformanceObserver((l) => { if (probe.measuring) for (const e of l.getEntries()) probe.longTasks.push(e.duration); }).observe({ type: 'longtask', buffered: false });
} catch { /* no Long Tasks API: frames are still measured */ }

let lastFrame = performance.now();
function frame(now: number): void {
  if (probe.measuring) probe.frames.push(now - lastFrame);
  lastFrame = now;
  requestAnimationFrame(frame);
}
requestAnimationFrame(frame);

// ---------- topology ----------

function podLabel(p: UiPod): string {
  return `${p.name} (${p.node}, ${p.ip})`;
}

function setTopology(t: UiTopology): void {
  state.topology = t;
  state.pods = podIndex(t);
  state.layout = renderTopology(svg, t);
  if (probe.firstRenderMs === undefined) {
    probe.firstRenderMs = performance.now();
    document.body.dataset.rendered = 'true';
  }
  $('#cluster').textContent = `${t.cluster}: ${t.nodes.length} nodes, ${t.nodes.reduce((a, n) => a + n.pods.length, 0)} pods`;
  fillPodSelects(t);
  if (state.trace) drawTrace(state.trace);
  for (const g of svg.querySelectorAll<SVGGElement>('.pod')) {
    g.addEventListener('click', () => {
      const key = g.dataset.pod!;
      $<HTMLSelectElement>('#policy-pod').value = key;
      showPolicies();
    });
  }
}

/** The pod name the server takes for a node itself (src/ui/server.ts HOST). */
const HOST = '@host';

function fillPodSelects(t: UiTopology): void {
  const pods = t.nodes.flatMap((n) => n.pods);
  // The trace form also takes the nodes themselves (host to pod, pod to host: the seed's other paths).
  const choices = (withHosts: boolean) => [
    ...pods.map((p) => [podLabel(p), `${p.node}/${p.name}`] as const),
    ...(withHosts ? t.nodes.map((n) => [`${n.name} (host${n.nodeIP ? `, ${n.nodeIP}` : ''})`, `${n.name}/${HOST}`] as const) : []),
  ];
  for (const sel of [...document.querySelectorAll<HTMLSelectElement>('#trace-form select[name=src], #trace-form select[name=dst], #policy-pod')]) {
    const keep = sel.value;
    const opts = choices(sel.id !== 'policy-pod');
    if ([...sel.options].map((o) => o.value).join() === opts.map((o) => o[1]).join()) continue;
    sel.replaceChildren(...opts.map(([label, value]) => new Option(label, value)));
    if (opts.some((o) => o[1] === keep)) sel.value = keep;
  }
  const dst = $<HTMLSelectElement>('#trace-form select[name=dst]');
  if (dst.selectedIndex === 0 && pods.length > 1 && !dst.dataset.touched) {
    // Default to a pod on another node: the seed's cross-node path.
    const src = pods[0]!;
    const other = pods.findIndex((p) => p.node !== src.node);
    dst.selectedIndex = other >= 0 ? other : 1;
  }
}

// ---------- flows ----------

function flowMatches(f: Flow, q: { pod: string; verdict: string; protocol: string; port: string }): boolean {
  if (q.verdict && f.verdict !== q.verdict) return false;
  if (q.protocol && !(q.protocol === 'ICMPv4' ? f.l4?.ICMPv4 : q.protocol === 'TCP' ? f.l4?.TCP : f.l4?.UDP)) return false;
  if (q.port && String(portOf(f) ?? '') !== q.port) return false;
  if (q.pod) {
    const names = [f.source?.pod_name, f.destination?.pod_name, f.IP?.source, f.IP?.destination].filter(Boolean) as string[];
    if (!names.some((n) => n.includes(q.pod))) return false;
  }
  return true;
}

function filters(): { pod: string; verdict: string; protocol: string; port: string; pause: boolean } {
  const f = $<HTMLFormElement>('#filters');
  const v = (n: string) => (f.elements.namedItem(n) as HTMLInputElement).value.trim();
  return { pod: v('pod'), verdict: v('verdict'), protocol: v('protocol'), port: v('port'), pause: (f.elements.namedItem('pause') as HTMLInputElement).checked };
}

/** A flow's end by pod name: the node's own name for it, else the pod the topology has at that IP (a remote pod), else the IP. */
const endName = (f: Flow, which: 'source' | 'destination'): string => {
  const ip = which === 'source' ? f.IP?.source : f.IP?.destination;
  return f[which]?.pod_name ?? (ip ? state.pods.get(ip)?.name ?? hostName(ip) : undefined) ?? ip ?? '';
};

/** "node-1 (host)" for a node's own address (its node IP or router IP), else undefined. */
function hostName(ip: string): string | undefined {
  const n = state.topology?.nodes.find((x) => x.nodeIP === ip || x.routerIP === ip);
  return n ? `${n.name} (host)` : undefined;
}

function pathText(f: Flow): string {
  return (f.hops ?? []).map((h) => (h.point === 'DROPPED' ? `✗ ${h.ifname ?? ''}` : `${h.point_text ?? h.point}${h.ifname ? `@${h.ifname}` : ''}`)).join(' → ');
}

/** The table's rows, made once and refilled in place (a flood must not make the page build hundreds of rows a second). */
const rowPool: { tr: HTMLTableRowElement; cells: HTMLTableCellElement[] }[] = [];
let rowFlows: Flow[] = [];

function row(i: number): { tr: HTMLTableRowElement; cells: HTMLTableCellElement[] } {
  while (rowPool.length <= i) {
    const tr = document.createElement('tr');
    tr.dataset.i = String(rowPool.length);
    const cells = Array.from({ length: 7 }, (_, j) => {
      const td = document.createElement('td');
      if (j === 5) td.className = 'verdict';
      tr.append(td);
      return td;
    });
    rowPool.push({ tr, cells });
  }
  return rowPool[i]!;
}

function renderTable(): void {
  const q = filters();
  if (q.pause) return;
  const tbody = $<HTMLTableSectionElement>('#flows tbody');
  const shownFlows: Flow[] = [];
  for (let i = state.flows.length - 1; i >= 0 && shownFlows.length < TABLE_ROWS; i--) {
    const f = state.flows[i]!;
    if (flowMatches(f, q)) shownFlows.push(f);
  }
  shownFlows.forEach((f, i) => {
    const r = row(i);
    const cls = `${dropped(f) ? 'dropped' : 'forwarded'}${f === state.selected ? ' selected' : ''}`;
    if (r.tr.className !== cls) r.tr.className = cls;
    const verdict = dropped(f) ? `DROPPED (${dropReasonOf(f)})` : f.verdict ?? '';
    const text = [f.time ? new Date(f.time).toLocaleTimeString() : '', f.node_name ?? '', endName(f, 'source'), endName(f, 'destination'), protoOf(f) || (f.Summary ?? ''), verdict, pathText(f)];
    text.forEach((c, j) => { if (r.cells[j]!.textContent !== c) r.cells[j]!.textContent = c; });
    if (r.tr.parentNode !== tbody || tbody.children[i] !== r.tr) tbody.append(r.tr);
  });
  while (tbody.children.length > shownFlows.length) tbody.lastElementChild!.remove();
  rowFlows = shownFlows;
  $('#flow-count').textContent = `${state.received} flows received${state.skipped ? `, ${state.skipped} not drawn (too many at once)` : ''}; showing ${shownFlows.length}`;
}

$<HTMLTableSectionElement>('#flows tbody').addEventListener('click', (e) => {
  const tr = (e.target as Element).closest('tr');
  const f = tr ? rowFlows[Number(tr.dataset.i)] : undefined;
  if (f) selectFlow(f);
});

function esc(s: unknown): string {
  return String(s ?? '').replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]!));
}

function selectFlow(f: Flow): void {
  state.selected = f;
  state.dirtyTable = true;
  const hops = (f.hops ?? []).map((h) => `<li class="${h.point === 'DROPPED' ? 'drop' : ''}"><b>${esc(h.point_text ?? h.point)}</b>` +
    `${h.ifname ? ` on <code>${esc(h.ifname)}</code>` : ''}${h.program ? ` by <code>${esc(h.program)}</code>` : ''}` +
    `${h.state ? ` (ct ${esc(h.state)})` : ''}${h.src_identity !== undefined ? ` identity ${esc(h.src_identity)}→${esc(h.dst_identity ?? '?')}` : ''}</li>`).join('');
  const drop = f.drop ? `<p class="drop-text">dropped: ${esc(f.drop.reason_desc)} (${esc(f.drop.reason)}: ${esc(f.drop.reason_text)}) at ${esc(f.drop.file)}:${esc(f.drop.line)}${f.drop.ifname ? ` on ${esc(f.drop.ifname)}` : ''}</p>` : '';
  const encap = f.encap ? `<p>tunnel key: remote <code>${esc(f.encap.tunnel_endpoint)}</code>, VNI ${esc(f.encap.vni)} (the source identity)</p>` : '';
  const v = f.policy_verdict as Record<string, unknown> | undefined;
  const pv = v ? `<p>policy verdict: <b>${esc(v.verdict)}</b> at ${esc(v.direction)} (${esc(v.reason)}; match ${esc(v.match)}, remote identity ${esc(v.remote_identity)})</p>` : '';
  $('#flow-detail').innerHTML = `<p><b>${esc(endName(f, 'source'))}</b> (${esc(f.IP?.source)}, identity ${esc(f.source?.identity)}) → <b>${esc(endName(f, 'destination'))}</b> (${esc(f.IP?.destination)}, identity ${esc(f.destination?.identity)})</p>` +
    `<p>${esc(protoOf(f))} on ${esc(f.node_name)}: <span class="${dropped(f) ? 'drop-text' : 'ok-text'}">${esc(f.verdict)}</span>${f.is_reply ? ' (reply)' : ''} ${esc(f.traffic_direction ?? '')}</p>` +
    `${drop}<ol class="hops">${hops}</ol>${encap}${pv}` +
    `<div id="flow-entries"><p class="muted">reading the deciding map entries…</p></div>` +
    `<p><button type="button" id="trace-this">Trace this pair</button> <span class="muted">(a probe with membrane trace: the deciding map entries of each hop)</span></p>`;
  showEntries(f);
  $('#trace-this').addEventListener('click', () => {
    const src = f.IP ? state.pods.get(f.IP.source) : undefined;
    const dst = f.IP ? state.pods.get(f.IP.destination) : undefined;
    const form = $<HTMLFormElement>('#trace-form');
    if (src) (form.elements.namedItem('src') as HTMLSelectElement).value = `${src.node}/${src.name}`;
    if (dst) (form.elements.namedItem('dst') as HTMLSelectElement).value = `${dst.node}/${dst.name}`;
    (form.elements.namedItem('protocol') as HTMLSelectElement).value = f.l4?.TCP ? 'TCP' : f.l4?.UDP ? 'UDP' : 'ICMP';
    (form.elements.namedItem('port') as HTMLInputElement).value = String(portOf(f) ?? '');
    runTrace();
  });
  if (state.topology && state.layout) {
    const steps = flowSteps(state.topology, state.layout, f, state.pods);
    svg.querySelector('.path.selected')?.remove();
    const p = drawPath(svg, state.layout, steps, dropped(f) ? 'dropped' : 'forwarded', dropped(f) ? dropLabel(f) : undefined, 2);
    p?.g.classList.add('selected');
  }
}

/** The map entries that decided each hop, as the node's maps hold them now (POST /api/flow/entries). */
async function showEntries(f: Flow): Promise<void> {
  const out = () => document.querySelector('#flow-entries');
  try {
    const entries = await post<{ hop: string; decided: string[] }[]>('/api/flow/entries', f);
    if (state.selected !== f || !out()) return;
    out()!.innerHTML = `<p><b>Deciding map entries</b> <span class="muted">(on ${esc(f.node_name)}, read now)</span></p>` +
      `<ul class="hops entries">${entries.map((e) => `<li><b>${esc(e.hop)}</b><br><span class="mono">${e.decided.map(esc).join('<br>')}</span></li>`).join('')}</ul>`;
  } catch (e) {
    if (state.selected === f && out()) out()!.innerHTML = `<p class="error">map entries: ${esc((e as Error).message)}</p>`;
  }
}

function addFlows(flows: Flow[], skipped: number): void {
  state.received += flows.length + skipped;
  state.skipped += skipped;
  state.flows.push(...flows);
  if (state.flows.length > MAX_FLOWS) state.flows.splice(0, state.flows.length - MAX_FLOWS);
  state.newPaths.push(...flows);
  if (state.newPaths.length > MAX_PATHS) state.newPaths.splice(0, state.newPaths.length - MAX_PATHS);
  state.dirtyTable = true;
}

/** One drawn path per node, pair, protocol and verdict: a repeated flow renews its path instead of adding one. */
const pathKey = (f: Flow): string => `${f.node_name}|${f.IP?.source ?? ''}>${f.IP?.destination ?? ''}|${protoOf(f)}|${f.verdict}`;
const drawn = new Map<string, SVGGElement>();

/** Draws the newest flows as paths; each fades out, and at most MAX_PATHS are on the drawing. */
function drawNewPaths(now: number): void {
  if (!state.topology || !state.layout || !state.newPaths.length) return;
  for (const f of state.newPaths) {
    const key = pathKey(f);
    const old = drawn.get(key);
    if (old?.isConnected) {
      old.dataset.born = String(now);
      old.removeAttribute('opacity');
      continue;
    }
    const steps = flowSteps(state.topology, state.layout, f, state.pods);
    const d = drawPath(svg, state.layout, steps, dropped(f) ? 'dropped' : 'forwarded', dropped(f) ? dropLabel(f) : undefined);
    if (!d) continue;
    d.g.dataset.flow = `${f.IP?.source ?? ''}>${f.IP?.destination ?? ''} ${protoOf(f)}`;
    d.g.dataset.born = String(now);
    drawn.set(key, d.g);
  }
  state.newPaths = [];
  const live = [...drawn.values()].filter((g) => g.isConnected).sort((a, b) => Number(a.dataset.born) - Number(b.dataset.born));
  for (const g of live.slice(0, Math.max(0, live.length - MAX_PATHS))) g.remove();
  for (const [k, g] of drawn) if (!g.isConnected) drawn.delete(k);
}

/** Paths older than their time go; in their last second they are drawn faint (one change, no animation to repaint). */
function expirePaths(now: number): void {
  for (const [k, g] of drawn) {
    const age = now - Number(g.dataset.born);
    // Drops stay longer: they are what a reader looks for.
    const ttl = g.classList.contains('dropped') ? PATH_TTL_MS * 4 : PATH_TTL_MS;
    if (age > ttl) { g.remove(); drawn.delete(k); }
    else if (age > ttl - 1_000 && !g.hasAttribute('opacity')) g.setAttribute('opacity', '0.35');
  }
}

let lastRedraw = 0;
let lastTable = 0;
function tick(now: number): void {
  if (now - lastRedraw >= REDRAW_MS) {
    lastRedraw = now;
    const t0 = performance.now();
    if (state.dirtyTable && now - lastTable >= TABLE_MS) { state.dirtyTable = false; lastTable = now; renderTable(); }
    drawNewPaths(now);
    expirePaths(now);
    probe.work(performance.now() - t0);
  }
  requestAnimationFrame(tick);
}
requestAnimationFrame(tick);

// ---------- trace and policy ----------

async function post<T>(path: string, body: unknown): Promise<T> {
  const r = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const v = await r.json();
  if (!r.ok) throw new Error(`${v.message ?? r.statusText}${v.hint ? ` (${v.hint})` : ''}`);
  return v as T;
}

function pairFromForm(): { src: { node: string; pod: string }; dst: { node: string; pod: string }; protocol: string; port?: number } {
  const form = $<HTMLFormElement>('#trace-form');
  const v = (n: string) => (form.elements.namedItem(n) as HTMLInputElement).value;
  const split = (s: string) => ({ node: s.slice(0, s.indexOf('/')), pod: s.slice(s.indexOf('/') + 1) });
  const port = v('port');
  return { src: split(v('src')), dst: split(v('dst')), protocol: v('protocol'), ...(port ? { port: Number(port) } : {}) };
}

function drawTrace(r: TraceResult): void {
  if (!state.topology || !state.layout) return;
  svg.querySelector('.path.trace')?.remove();
  const steps = traceSteps(state.topology, state.layout, r, state.pods);
  const label = r.verdict === 'DROPPED' && r.drop ? `✗ ${r.drop.reasonText}` : r.verdict;
  const p = drawPath(svg, state.layout, steps, 'trace', label, -2);
  if (p) p.g.dataset.verdict = r.verdict;
}

async function runTrace(): Promise<void> {
  const out = $('#trace-result');
  out.innerHTML = '<p class="muted">sending a probe…</p>';
  try {
    const r = await post<TraceResult>('/api/trace', pairFromForm());
    state.trace = r;
    drawTrace(r);
    const hops = r.hops.map((h) => `<li class="${h.kind === 'drop' ? 'drop' : ''}">${h.reply ? '(reply) ' : ''}<b>${esc(h.node)}</b> ${esc(h.point)}${h.device ? ` <code>${esc(h.device)}</code>` : ''}${h.program ? ` <code>${esc(h.program)}</code>` : ''}` +
      `${h.decided.length ? `<br><span class="mono">${h.decided.map(esc).join('<br>')}</span>` : ''}</li>`).join('');
    const drop = r.drop ? `<p class="drop-text">dropped on ${esc(r.drop.node)} at ${esc(r.drop.point)}${r.drop.device ? ` (${esc(r.drop.device)})` : ''}: ${esc(r.drop.reasonText)} (${esc(r.drop.reason)}), ${esc(r.drop.file)}:${esc(r.drop.line)}</p>` : '';
    out.innerHTML = `<p id="trace-verdict" class="${r.verdict === 'DELIVERED' ? 'ok-text' : 'drop-text'}">${esc(r.source.name)} → ${esc(r.destination.name)}: ${esc(r.verdict)}</p>${drop}<ol class="hops">${hops}</ol>`;
  } catch (e) {
    out.innerHTML = `<p class="error">trace: ${esc((e as Error).message)}</p>`;
  }
}

interface Verdict { verdict: string; text: string; egress: { text: string }; ingress: { text: string }; srcIdentity: number; dstIdentity: number }

async function runVerdict(): Promise<void> {
  const out = $('#trace-result');
  try {
    const r = await post<Verdict>('/api/policy/trace', pairFromForm());
    out.innerHTML = `<p id="policy-verdict" class="${r.verdict === 'allowed' ? 'ok-text' : 'drop-text'}">policy: ${esc(r.verdict)}</p>` +
      `<p>egress of the source (to identity ${esc(r.dstIdentity)}): ${esc(r.egress.text)}</p><p>ingress of the destination (from identity ${esc(r.srcIdentity)}): ${esc(r.ingress.text)}</p>`;
  } catch (e) {
    out.innerHTML = `<p class="error">policy verdict: ${esc((e as Error).message)}</p>`;
  }
}

interface RuleRef { kind: string; name: string; namespace?: string; path: string }
interface Selecting { pod: string; identity: number; egress: { enforcement: string; selectedBy: RuleRef[] }; ingress: { enforcement: string; selectedBy: RuleRef[] } }

async function showPolicies(): Promise<void> {
  const key = $<HTMLSelectElement>('#policy-pod').value;
  const out = $('#policy-result');
  for (const g of svg.querySelectorAll('.pod')) g.classList.toggle('selected', (g as SVGGElement).dataset.pod === key);
  if (!key) return;
  const [node, pod] = [key.slice(0, key.indexOf('/')), key.slice(key.indexOf('/') + 1)];
  try {
    const r = await fetch(`/api/pods/${encodeURIComponent(node)}/${encodeURIComponent(pod)}/policies`);
    const v = await r.json();
    if (!r.ok) throw new Error(v.message);
    const s = v as Selecting;
    const list = (d: Selecting['egress']) => d.selectedBy.length
      ? `<ul>${d.selectedBy.map((x) => `<li>${esc(x.kind)} <b>${esc(x.namespace ? `${x.namespace}/` : '')}${esc(x.name)}</b> <span class="muted">${esc(x.path)}</span></li>`).join('')}</ul>`
      : '<span class="muted"> no policy selects it: everything allowed</span>';
    out.innerHTML = `<p><b>${esc(s.pod)}</b> (identity ${esc(s.identity)})</p><p>egress (${esc(s.egress.enforcement)}):${list(s.egress)}</p><p>ingress (${esc(s.ingress.enforcement)}):${list(s.ingress)}</p>`;
  } catch (e) {
    out.innerHTML = `<p class="error">${esc((e as Error).message)}</p>`;
  }
}

$<HTMLFormElement>('#trace-form').addEventListener('submit', (e) => { e.preventDefault(); runTrace(); });
$<HTMLButtonElement>('#trace-form button[name=verdict]').addEventListener('click', () => runVerdict());
$<HTMLSelectElement>('#trace-form select[name=dst]').addEventListener('change', (e) => { (e.target as HTMLSelectElement).dataset.touched = '1'; });
$<HTMLSelectElement>('#policy-pod').addEventListener('change', () => showPolicies());
$<HTMLFormElement>('#filters').addEventListener('input', () => { state.dirtyTable = true; });

// ---------- the live stream ----------

function showStreams(s: StreamState[]): void {
  state.streams = s;
  $('#streams').replaceChildren(...s.map((x) => {
    const b = document.createElement('span');
    b.className = `badge ${x.connected ? 'ok' : 'bad'}`;
    b.dataset.node = x.node;
    b.textContent = `${x.node} flows ${x.connected ? 'live' : 'reconnecting'}${x.lost ? ` (${x.lost} lost)` : ''}`;
    b.title = [x.error, `${x.received} flows received`, x.lost ? `${x.lost} events or flows lost by the agent (ring buffer full, or this stream read too slowly)` : ''].filter(Boolean).join('\n');
    return b;
  }));
}

function connect(): void {
  const conn = $('#conn');
  const es = new EventSource('/api/events');
  es.onopen = () => { conn.textContent = 'live'; conn.className = 'badge ok'; };
  es.onerror = () => { conn.textContent = 'reconnecting'; conn.className = 'badge bad'; };
  es.addEventListener('topology', (e) => setTopology(JSON.parse((e as MessageEvent).data)));
  es.addEventListener('flows', (e) => {
    const t0 = performance.now();
    const v = JSON.parse((e as MessageEvent).data) as { flows: Flow[]; skipped: number };
    addFlows(v.flows, v.skipped);
    probe.work(performance.now() - t0);
  });
  es.addEventListener('streams', (e) => showStreams(JSON.parse((e as MessageEvent).data)));
}

// The first drawing does not wait for the stream: one request, then live updates.
fetch('/api/topology').then((r) => (r.ok ? r.json() : undefined)).then((t) => { if (t && !state.topology) setTopology(t); }).catch(() => undefined);
connect();
