// Every command of the CLI, in the order `membrane help` lists them.
import type { Command } from '../command.ts';
import { agentCmd, endpointList, nodeDelete, nodeList, statusCmd } from './agent.ts';
import { bpfCt, bpfEndpoints, bpfIpcache, bpfMetrics, bpfNat, bpfNet, bpfPolicy } from './bpf.ts';
import { connectivityTestCmd } from './connectivity.ts';
import { datapathExplain, datapathInit } from './datapath.ts';
import { installCmd, uninstallCmd } from './install.ts';
import { labCommands } from './lab.ts';
import { monitorCmd } from './monitor.ts';
import { observeCmd } from './observe.ts';
import { traceCmd } from './trace.ts';
import { policyCommands } from './policy.ts';
import { uiCmd } from './ui.ts';

export const commands: Command[] = [agentCmd, statusCmd, endpointList, nodeList, nodeDelete, datapathInit, datapathExplain, bpfNet, bpfIpcache, bpfEndpoints, bpfMetrics, bpfPolicy, bpfCt, bpfNat, ...policyCommands, ...labCommands, connectivityTestCmd, installCmd, uninstallCmd, monitorCmd, observeCmd, traceCmd, uiCmd];
