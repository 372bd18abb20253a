// Public API of Membrane's rtnetlink layer: a per-netns handle and the verbs.
// Wire codecs stay internal (import from ./wire/* in tests only).
export { NetlinkHandle } from './handle.ts';
export { DumpInterruptedError } from './socket.ts';
export {
  type Link, type LinkChanges, type VethOptions, type VxlanAttrs, type VxlanOptions,
  linkAddBridge, linkAddVeth, linkAddVxlan, linkDel, linkGet, linkList, linkSet, linkSetDown, linkSetMac, linkSetMaster,
  linkSetMtu, linkSetName, linkSetNetns, linkSetNoArp, linkSetTxqlen, linkSetUp,
} from './link.ts';
export { type Addr, addrAdd, addrDel, addrList, addrReplace } from './addr.ts';
export { type Route, type RouteProtocol, type RouteScope, type RouteType, routeAdd, routeDel, routeList, routeReplace } from './route.ts';
export { type FdbEntry, type NeighState, type Neighbour, neighAdd, neighAppend, neighDel, neighList, neighReplace } from './neigh.ts';
