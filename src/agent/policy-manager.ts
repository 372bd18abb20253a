// Network policy on this node: the policies and identities of the cluster
// (both from the store, watched) and this node's endpoints go into the
// policy engine (src/policy), and what it computes goes into each
// endpoint's policy map and the host firewall (src/datapath). Every change
// (a policy imported or deleted, a new identity, an endpoint added)
// schedules one recompute, coalesced; a recompute writes only what changed,
// new entries before stale ones go, so no packet of an unrelated flow is
// ever dropped in between. CIDR rules get node-local identities
// (>= 1<<24), put in the ipcache for their prefixes.
import { type NodeDatapath } from '../datapath/node.ts';
import { IDENTITY_HOST } from '../datapath/maps/identities.ts';
import {
  CIDR_IDENTITY_BASE, cidrIdentityLabels, cidrPrefixes, parsePolicyValues, PolicyEngine, policyId, reservedUniverse,
  type Labels, type Policy, type PolicyMapEntry, type SubjectPolicy, type TraceRequest, type TraceResult,
} from '../policy/index.ts';
import type { NodeConfig } from '../shared/config.ts';
import { IDENTITY_ID_PREFIX, parseIdentityIdKey, parseLabelKey, parsePolicyKey, POLICIES_PREFIX } from '../store/keys.ts';
import type { KVStore, Watch, WatchEvent } from '../store/store.ts';
import { securityLabels } from './labels.ts';

/** The endpoints the manager computes policy for (the endpoint manager's view). */
export interface PolicySubjects {
  list(): readonly { id: number; identity: number; labels: Record<string, string>; podNamespace?: string }[];
}

export interface PolicyStatus {
  /** Store revision of the policies and identities the maps reflect (0 before the first apply). */
  revision: number;
  /** Policies in force, as namespace/name (clusterwide: name). */
  policies: string[];
  appliedAt?: string;
  /** How long the last recompute took, store event to maps written. */
  lastApplyMs?: number;
  /** Endpoints whose map the last recompute wrote, and entries written/deleted. */
  lastChanges?: { endpoints: number; written: number; deleted: number };
  hostFirewall: boolean;
  /** Policies in the store this agent could not use (named, with why). */
  invalid: string[];
  lastError?: string;
}

/**
 * A trace as the datapath decides it: the engine knows the rules, and the
 * agent adds Cilium's allow-localhost (the node always reaches its own
 * pods) for an ingress-enforced pod no rule decides for.
 */
export function withLocalhost(req: Pick<TraceRequest, 'src'>, r: TraceResult): TraceResult {
  if (req.src.kind !== 'host' || r.srcIdentity !== IDENTITY_HOST || r.ingress.reason !== 'default-deny' || r.egress.allowed === false) return r;
  const ingress = { ...r.ingress, allowed: true, reason: 'allowed-by-rule' as const, text: 'allowed: the node always reaches its own pods (allow-localhost)' };
  return { ...r, ingress, verdict: 'allowed', text: 'allowed: the node reaches its own pods whatever their ingress policy, unless a rule decides for the host' };
}

/** Coalesces a burst of store events (an import of many policies) into one recompute. */
const COALESCE_MS = 10;

export class PolicyManager {
  private readonly raw = new Map<string, { value: unknown; revision: number }>();
  private readonly identities = new Map<number, Labels>();
  /** CIDR prefix -> its node-local identity; kept stable while a policy names the prefix. */
  private readonly cidrIds = new Map<string, number>();
  private engine = new PolicyEngine([], reservedUniverse());
  private policies: Policy[] = [];
  private invalid: string[] = [];
  /** The newest store revision seen (watch events move it before the coalesced apply runs). */
  private revision = 0;
  /** The revision the maps reflect: what status() reports, so a waiter never sees a revision before its maps are written. */
  private appliedRevision = 0;
  private watches: Watch[] = [];
  private timer?: NodeJS.Timeout;
  private pendingSince?: number;
  private hostFirewall = false;
  private appliedAt?: Date;
  private lastApplyMs?: number;
  private lastChanges?: PolicyStatus['lastChanges'];
  lastError?: string;

  constructor(
    private readonly dp: NodeDatapath,
    private readonly cfg: NodeConfig,
    private readonly store: KVStore,
    private readonly subjects: PolicySubjects,
    private readonly log: (s: string) => void,
  ) {}

  /** Lists policies and identities, applies them, then watches both. */
  async start(): Promise<void> {
    const [pols, ids] = await Promise.all([this.store.list(POLICIES_PREFIX), this.store.list(IDENTITY_ID_PREFIX)]);
    for (const e of pols.entries) this.onPolicy({ type: 'put', key: e.key, value: e.value, revision: e.modRevision });
    for (const e of ids.entries) this.onIdentity({ type: 'put', key: e.key, value: e.value, revision: e.modRevision });
    this.revision = Math.max(pols.revision, ids.revision);
    this.apply();
    const onError = (e: Error) => { this.lastError = e.message; this.log(`policy watch: ${e.message} (maps kept as they are)`); };
    const on = (handle: (ev: WatchEvent) => void) => (ev: WatchEvent) => {
      handle(ev);
      this.revision = Math.max(this.revision, ev.revision);
      this.schedule();
    };
    this.watches.push(this.store.watch(POLICIES_PREFIX, pols.revision, on((ev) => this.onPolicy(ev)), onError));
    this.watches.push(this.store.watch(IDENTITY_ID_PREFIX, ids.revision, on((ev) => this.onIdentity(ev)), onError));
  }

  stop(): void {
    for (const w of this.watches) w.close();
    this.watches = [];
    clearTimeout(this.timer);
  }

  private onPolicy(ev: WatchEvent): void {
    if (!parsePolicyKey(ev.key)) return;
    if (ev.type === 'delete') {
      this.raw.delete(ev.key);
      return;
    }
    try {
      this.raw.set(ev.key, { value: JSON.parse(ev.value), revision: ev.revision });
    } catch (e) {
      this.raw.set(ev.key, { value: undefined, revision: ev.revision });
      this.log(`policy ${ev.key}: not JSON (${(e as Error).message}); ignored`);
    }
  }

  private onIdentity(ev: WatchEvent): void {
    const id = parseIdentityIdKey(ev.key);
    if (id === undefined) return;
    if (ev.type === 'delete') {
      this.identities.delete(id);
      return;
    }
    try {
      this.identities.set(id, Object.freeze(parseLabelKey(ev.value)));
    } catch {
      // A master key the allocator would not write: not an identity anyone can carry.
    }
  }

  private schedule(): void {
    this.pendingSince ??= performance.now();
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      try {
        this.apply();
      } catch (e) {
        this.lastError = (e as Error).message;
        this.log(`policy: ${(e as Error).message}`);
      }
    }, COALESCE_MS);
  }

  /** The policy of an endpoint with these labels, for an endpoint about to be created (its map starts with it). */
  entriesFor(labels: Record<string, string>, podNamespace?: string): PolicyMapEntry[] {
    return this.withLocalhost(this.engine.compute({ kind: 'endpoint', labels: securityLabels(labels, podNamespace) }));
  }

  /** Recomputes every local endpoint's policy and the host firewall, and writes what changed. */
  apply(): void {
    const t0 = this.pendingSince ?? performance.now();
    this.pendingSince = undefined;
    // Everything up to this revision is in this.raw and this.identities now (watch events are handled synchronously).
    const revision = this.revision;
    this.parse();
    this.syncCidrIdentities();
    const universe = reservedUniverse();
    for (const [id, labels] of this.identities) universe.set(id, labels);
    for (const [prefix, id] of this.cidrIds) universe.set(id, cidrIdentityLabels(prefix));
    this.engine = new PolicyEngine(this.policies, universe);

    const changes = { endpoints: 0, written: 0, deleted: 0 };
    for (const ep of this.subjects.list()) {
      const r = this.dp.setEndpointPolicy(ep.id, this.entriesFor(ep.labels, ep.podNamespace));
      if (r.written || r.deleted) changes.endpoints++;
      changes.written += r.written;
      changes.deleted += r.deleted;
    }
    const host = this.engine.compute({ kind: 'host', labels: this.nodeLabels() });
    const firewall = host.ingress === 'enforced' || host.egress === 'enforced';
    if (firewall !== this.hostFirewall) this.log(`host firewall ${firewall ? 'on: a clusterwide policy selects this node' : 'off: no policy selects this node'}`);
    this.hostFirewall = firewall;
    this.dp.setHostPolicy(firewall ? host.entries : undefined);

    this.lastChanges = changes;
    this.appliedRevision = revision;
    this.lastApplyMs = performance.now() - t0;
    this.appliedAt = new Date();
    this.lastError = undefined;
  }

  /** Stored policies, each validated on its own: one bad value (written by hand) costs only itself. */
  private parse(): void {
    const policies: Policy[] = [];
    const invalid: string[] = [];
    for (const [key, { value }] of this.raw) {
      const where = parsePolicyKey(key)!;
      try {
        policies.push(...parsePolicyValues([value], { operation: `read policy ${where.namespace ? `${where.namespace}/` : ''}${where.name} from the store` }).policies);
      } catch (e) {
        invalid.push(`${key}: ${(e as Error).message}`);
      }
    }
    for (const i of invalid) if (!this.invalid.includes(i)) this.log(`policy ignored: ${i}`);
    this.policies = policies;
    this.invalid = invalid;
  }

  /** Gives every prefix a CIDR rule names a node-local identity and its ipcache entry; drops those no rule names any more. */
  private syncCidrIdentities(): void {
    const want = new Set(cidrPrefixes(this.policies));
    for (const p of [...this.cidrIds.keys()]) if (!want.has(p)) this.cidrIds.delete(p);
    const used = new Set(this.cidrIds.values());
    let next = CIDR_IDENTITY_BASE;
    for (const p of want) {
      if (this.cidrIds.has(p)) continue;
      while (used.has(next)) next++;
      this.cidrIds.set(p, next);
      used.add(next);
    }
    this.dp.setCidrIdentities(this.cidrIds);
  }

  /**
   * The node can always reach its own pods (kubelet's probes in Kubernetes):
   * Cilium's allow-localhost default. An ingress-enforced endpoint gets an
   * allow for the host identity, unless a rule already decides for it.
   */
  private withLocalhost(p: SubjectPolicy): PolicyMapEntry[] {
    const entries = [...p.entries] as PolicyMapEntry[];
    if (p.ingress === 'enforced' && !entries.some((e) => !e.egress && e.identity === IDENTITY_HOST)) {
      entries.push({ identity: IDENTITY_HOST, egress: false, protocol: 0, port: 0, portPrefixLen: 0, deny: false });
    }
    return entries;
  }

  /** The node's labels for nodeSelector: the configured ones and its hostname, as Kubernetes labels nodes. */
  private nodeLabels(): Labels {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(this.cfg.nodeLabels)) out[k.includes(':') ? k : `k8s:${k}`] = v;
    return out;
  }

  status(): PolicyStatus {
    return {
      revision: this.appliedRevision,
      policies: this.policies.map(policyId).sort(),
      appliedAt: this.appliedAt?.toISOString(),
      lastApplyMs: this.lastApplyMs,
      lastChanges: this.lastChanges,
      hostFirewall: this.hostFirewall,
      invalid: this.invalid,
      lastError: this.lastError,
    };
  }

  /** What the engine has now: for `policy trace` and the identity listing. */
  snapshot(): { policies: readonly Policy[]; universe: ReadonlyMap<number, Labels> } {
    const universe = reservedUniverse();
    for (const [id, labels] of this.identities) universe.set(id, labels);
    for (const [prefix, id] of this.cidrIds) universe.set(id, cidrIdentityLabels(prefix));
    return { policies: this.policies, universe };
  }
}
