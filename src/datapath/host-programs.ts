// Loading bpf_host.o and bpf_overlay.o for the node's devices and attaching
// them as the seed shows (Cilium's attachCiliumHost / attachCiliumNet /
// replaceOverlayDatapath). One ELF, loaded once per attachment point so each
// gets its own calls map: cilium_calls_hostns_<hostEpID> for cilium_host,
// cilium_calls_netdev_<ifindex> for cilium_net, cilium_calls_overlay_2.
import { BpfObject } from '../bpf/index.ts';
import type { Link } from '../netlink/index.ts';
import type { NodeConfig } from '../shared/config.ts';
import { wrap } from '../shared/errors.ts';
import type { PhaseTimer } from '../shared/phase-timer.ts';
import { attachProgram, type AttachResult, type Hook } from './attach.ts';
import { HOST_ENDPOINT_ID } from './constants.ts';
import { objectPath, type ObjectName } from './objects.ts';
import { callsMapName, deviceLinkPin, globalsDir } from './paths.ts';
import type { Rollback } from './rollback.ts';

export interface AttachedProgram extends AttachResult {
  device: string;
  ifindex: number;
  hook: Hook;
  program: string;
  callsMap: string;
}

interface Plan {
  object: ObjectName;
  device: Link;
  callsMap: string;
  constants?: Record<string, number>;
  attach: { program: string; hook: Hook }[];
}

/** Loads one object for one device and attaches its entry programs; the object's fds are closed afterwards (pins keep it all alive). */
function loadAndAttach(cfg: NodeConfig, p: Plan, rb: Rollback, timer?: PhaseTimer): AttachedProgram[] {
  const nodeDir = cfg.paths.pinDir;
  const globals = globalsDir(nodeDir);
  let obj: BpfObject;
  try {
    obj = BpfObject.open(objectPath(p.object), {
      pinRoot: globals,
      mapPins: { cilium_calls: `${globals}/${p.callsMap}` },
      constants: p.constants,
    });
  } catch (e) {
    throw wrap(`load ${p.object}.o for ${p.device.name}`, e);
  }
  timer?.mark(`load ${p.object} for ${p.device.name}`);
  try {
    const attached = p.attach.map(({ program, hook }) => ({
      ...attachProgram({ prog: obj.program(program), ifindex: p.device.index, ifname: p.device.name, hook, linkPin: deviceLinkPin(nodeDir, p.device.name, program), legacyTc: cfg.forceLegacyTc, rb }),
      device: p.device.name, ifindex: p.device.index, hook, program, callsMap: p.callsMap,
    }));
    timer?.mark(`attach ${p.device.name}`);
    return attached;
  } finally {
    obj.close();
  }
}

/**
 * Attaches cil_to_host (ingress) and cil_from_host (egress) to cilium_host,
 * cil_to_host (ingress) to cilium_net, and cil_from_overlay / cil_to_overlay
 * to cilium_vxlan, and cil_from_netdev (ingress) / cil_to_netdev (egress) to
 * the native device when there is one. Existing tcx links are updated in place.
 */
export function attachNodePrograms(cfg: NodeConfig, devs: { host: Link; net: Link; vxlan: Link; native?: Link }, rb: Rollback, timer?: PhaseTimer): AttachedProgram[] {
  const plans: Plan[] = [
    {
      object: 'bpf_host', device: devs.host, callsMap: callsMapName.hostns(HOST_ENDPOINT_ID),
      constants: { HOST_EP_ID: HOST_ENDPOINT_ID },
      attach: [{ program: 'cil_to_host', hook: 'ingress' }, { program: 'cil_from_host', hook: 'egress' }],
    },
    {
      object: 'bpf_host', device: devs.net, callsMap: callsMapName.netdev(devs.net.index),
      constants: { HOST_EP_ID: HOST_ENDPOINT_ID },
      attach: [{ program: 'cil_to_host', hook: 'ingress' }],
    },
    {
      object: 'bpf_overlay', device: devs.vxlan, callsMap: callsMapName.overlay(),
      attach: [{ program: 'cil_from_overlay', hook: 'ingress' }, { program: 'cil_to_overlay', hook: 'egress' }],
    },
  ];
  // The native (underlay) device: masquerade and native-routing delivery (Cilium's attachNetworkDevices).
  if (devs.native) {
    plans.push({
      object: 'bpf_host', device: devs.native, callsMap: callsMapName.netdev(devs.native.index),
      constants: { HOST_EP_ID: HOST_ENDPOINT_ID },
      attach: [{ program: 'cil_from_netdev', hook: 'ingress' }, { program: 'cil_to_netdev', hook: 'egress' }],
    });
  }
  return plans.flatMap((p) => loadAndAttach(cfg, p, rb, timer));
}
