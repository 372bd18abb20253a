// `membrane install` and `membrane uninstall`: put the CNI plugin, the
// conflist, the node config and the systemd unit on a host (src/cli/install/
// plans and writes them), and take them away again; `uninstall --purge` also
// removes the node's datapath, pins and state through the datapath layer.
import { MembraneError } from '../../shared/errors.ts';
import type { Command } from '../command.ts';
import { json } from '../output.ts';

const ROOT_FLAG = { root: { type: 'string' as const, help: 'write under this directory instead of / (packaging, tests); the files still name the target system\'s paths' } };

export const installCmd: Command = {
  path: ['install'],
  summary: 'install on this host: CNI plugin into /opt/cni/bin, conflist into /etc/cni/net.d, node config into /etc/membrane, the systemd unit (idempotent)',
  usage: '[--config FILE] [--root DIR] [--cni-bin-dir DIR] [--cni-conf-dir DIR]',
  flags: {
    config: { type: 'string', help: 'node config to install as /etc/membrane/config.yaml (default: use the one already there)' },
    ...ROOT_FLAG,
    cniBinDir: { type: 'string', help: 'CNI plugin directory (default /opt/cni/bin)' },
    cniConfDir: { type: 'string', help: 'CNI network config directory (default /etc/cni/net.d)' },
  },
  async run(ctx) {
    const [{ readFileSync, existsSync, realpathSync }, { dirname }, { readConfigFile, validateNodeConfig, parseConfigText }, plan, apply, { CNI_PLUGIN, MEMBRANE_BIN, REPO }] = await Promise.all([
      import('node:fs'), import('node:path'), import('../../shared/config.ts'), import('../install/plan.ts'), import('../install/apply.ts'), import('../../lab/layout.ts'),
    ]);
    const f = ctx.args.flags;
    const root = (f.root as string | undefined) ?? '/';
    if (!root.startsWith('/')) throw new MembraneError('install', { code: 'E_USAGE', cause: `--root must be an absolute path (got ${root})` });
    let configText: string | undefined;
    let raw: Record<string, unknown>;
    let source: string;
    if (typeof f.config === 'string') {
      source = f.config;
      raw = readConfigFile(source);
      configText = readFileSync(source, 'utf8');
    } else {
      source = apply.pathUnderRoot(root, plan.NODE_CONFIG);
      if (!existsSync(source)) {
        throw new MembraneError('install', { code: 'E_USAGE', cause: `no node config: ${source} does not exist and no --config was given`, hint: 'membrane install --config node.yaml (docs/deploy.md shows one)' });
      }
      raw = parseConfigText(readFileSync(source, 'utf8'), source);
    }
    const cfg = validateNodeConfig(raw, source);
    if (!existsSync(CNI_PLUGIN)) throw new MembraneError('install', { code: 'E_INSTALL', cause: `the CNI plugin ${CNI_PLUGIN} is not built`, hint: `npm run build (in ${REPO})` });
    const files = plan.planInstall({
      cfg, configText, cniPlugin: readFileSync(CNI_PLUGIN), membraneBin: realpathSync(MEMBRANE_BIN), nodeDir: dirname(process.execPath),
      cniBinDir: f.cniBinDir as string | undefined, cniConfDir: f.cniConfDir as string | undefined,
    });
    const r = apply.installFiles(root, files);
    if (ctx.json) return void ctx.out(json(r));
    for (const x of r.files) ctx.out(`${x.action.padEnd(9)} ${x.path} (${x.what})\n`);
    if (root === '/') ctx.out(`next: systemctl daemon-reload && systemctl enable --now ${plan.UNIT_NAME}\n`);
  },
};

export const uninstallCmd: Command = {
  path: ['uninstall'],
  summary: 'remove what install wrote; --purge also removes this node\'s devices, pins and state (run in the node\'s netns, agent stopped)',
  usage: '[--root DIR] [--purge]',
  flags: {
    ...ROOT_FLAG,
    purge: { type: 'boolean', help: 'also delete the node\'s devices (cilium_*, lxc*), its bpffs pins and the agent\'s state files' },
  },
  async run(ctx) {
    const [{ readFileSync, existsSync, rmSync }, { parseConfigText, validateNodeConfig }, plan, apply] = await Promise.all([
      import('node:fs'), import('../../shared/config.ts'), import('../install/plan.ts'), import('../install/apply.ts'),
    ]);
    const f = ctx.args.flags;
    const root = (f.root as string | undefined) ?? '/';
    const purge = f.purge === true;
    // The node config is read before the files go: the purge needs its paths.
    let cfg: import('../../shared/config.ts').NodeConfig | undefined;
    if (purge) {
      const p = apply.pathUnderRoot(root, plan.NODE_CONFIG);
      if (!existsSync(p)) throw new MembraneError('uninstall --purge', { code: 'E_INSTALL', cause: `no node config at ${p}: without it the node's devices and pins are unknown` });
      cfg = validateNodeConfig(parseConfigText(readFileSync(p, 'utf8'), p), p);
      const { agentHolding } = await import('../../agent/lock.ts');
      const pid = agentHolding(cfg.paths.stateDir);
      if (pid) throw new MembraneError(`uninstall --purge node ${cfg.nodeName}`, { code: 'E_INSTALL', cause: `its agent (pid ${pid}) is still running`, hint: `stop it first: systemctl stop ${plan.UNIT_NAME}` });
    }
    const r = apply.uninstallFiles(root);
    let purged: import('../../datapath/reset.ts').ResetResult | undefined;
    const store: string[] = [];
    if (cfg) {
      const { resetNode, removeEmptyBpffsRoot } = await import('../../datapath/reset.ts');
      // The embedded store is this host's alone: its file goes too (first: it may sit in the state dir).
      if (cfg.store.backend === 'sqlite') {
        for (const s of ['', '-wal', '-shm']) {
          if (existsSync(cfg.store.path + s)) { rmSync(cfg.store.path + s); store.push(cfg.store.path + s); }
        }
      }
      purged = resetNode(cfg);
      if (removeEmptyBpffsRoot(cfg.bpffsRoot)) purged.state.push(cfg.bpffsRoot);
    }
    if (ctx.json) return void ctx.out(json({ ...r, ...(purged ? { purged: { ...purged, store } } : {}) }));
    if (!r.installed) ctx.out(`nothing installed under ${root} (no ${apply.pathUnderRoot(root, plan.MANIFEST)})\n`);
    for (const p of r.removed) ctx.out(`removed   ${p}\n`);
    for (const k of r.kept) ctx.out(`kept      ${k.path} (${k.why})\n`);
    for (const d of r.dirs) ctx.out(`removed   ${d}/\n`);
    if (purged) {
      ctx.out(`purged node ${cfg!.nodeName}: devices ${purged.devices.length ? purged.devices.join(', ') : '(none)'}; pins ${purged.pinDir ?? '(none)'}; state ${[...purged.state, ...store].join(', ') || '(none)'}\n`);
    }
  },
};
