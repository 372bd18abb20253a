// Every command of the CLI, in the order `membrane help` lists them.
import type { Command } from '../command.ts';
import { bpfEndpoints, bpfIpcache, bpfMetrics, bpfNet } from './bpf.ts';
import { datapathExplain, datapathInit } from './datapath.ts';

export const commands: Command[] = [datapathInit, datapathExplain, bpfNet, bpfIpcache, bpfEndpoints, bpfMetrics];
