// The lab's web UI: `membrane ui --lab NAME` started detached by `lab up`
// (like the agents: own process group, log in the lab's directory), on a
// free loopback port; the URL it serves is written by the UI itself to
// <labdir>/ui.url, recorded in lab.json and listed by `lab status` as uiURL.
// Its command line names that file, so `lab down` finds it like the agents.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { labDir, MEMBRANE_BIN } from './layout.ts';
import { isOurs, sleep, spawnDetached } from './processes.ts';
import type { LabRecord } from './record.ts';

export interface LabUiRecord {
  pid?: number;
  /** http://127.0.0.1:PORT/, once the UI listens. */
  url?: string;
  logFile: string;
  urlFile: string;
}

/** Starts the lab's UI (detached); the caller waits for it with waitLabUi and records the result. */
export function spawnLabUi(rec: LabRecord): LabUiRecord {
  const dir = labDir(rec.name);
  const ui: LabUiRecord = { logFile: `${dir}/ui.log`, urlFile: `${dir}/ui.url` };
  rmSync(ui.urlFile, { force: true });
  ui.pid = spawnDetached([MEMBRANE_BIN, 'ui', '--lab', rec.name, '--listen', '127.0.0.1:0', '--url-file', ui.urlFile], ui.logFile);
  return ui;
}

/**
 * Waits until the UI wrote its URL (it listens by then); returns it, or
 * undefined with the reason when the UI exited or did not come up in
 * `timeoutMs` (the lab works without its UI: the caller says so and goes on).
 */
export async function waitLabUi(ui: LabUiRecord, timeoutMs = 15_000): Promise<{ url?: string; problem?: string }> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (existsSync(ui.urlFile)) return { url: readFileSync(ui.urlFile, 'utf8').trim() };
    if (!isOurs(ui.pid, ui.urlFile)) return { problem: `it exited (log ${ui.logFile})` };
    if (Date.now() > end) return { problem: `no URL within ${timeoutMs / 1000} s (log ${ui.logFile})` };
    await sleep(50);
  }
}

/** The UI's URL while its process runs, else null. */
export function liveUiURL(rec: LabRecord): string | null {
  return rec.ui?.url && isOurs(rec.ui.pid, rec.ui.urlFile) ? rec.ui.url : null;
}
