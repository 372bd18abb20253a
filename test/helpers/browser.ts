// Headless Chromium (Debian's /usr/bin/chromium) driven over the DevTools
// protocol on a pipe (--remote-debugging-pipe: requests on fd 3, answers on
// fd 4, each message JSON ending in a NUL byte). Enough for the UI's
// end-to-end test: open a page, evaluate, wait for a condition, click, take
// screenshots. No browser is downloaded and no port is opened.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';

export const CHROMIUM = '/usr/bin/chromium';

interface Pending { resolve: (v: unknown) => void; reject: (e: Error) => void; method: string }

export class Browser {
  private seq = 0;
  private readonly pending = new Map<number, Pending>();
  private buf = '';
  readonly console: string[] = [];

  private constructor(private readonly child: ChildProcess, private readonly profile: string) {
    const out = child.stdio[4] as Readable;
    out.setEncoding('utf8');
    out.on('data', (chunk: string) => {
      this.buf += chunk;
      let i: number;
      while ((i = this.buf.indexOf('\0')) >= 0) {
        const msg = JSON.parse(this.buf.slice(0, i)) as { id?: number; result?: unknown; error?: { message: string }; method?: string; params?: Record<string, unknown> };
        this.buf = this.buf.slice(i + 1);
        if (msg.id !== undefined) {
          const p = this.pending.get(msg.id);
          this.pending.delete(msg.id);
          if (msg.error) p?.reject(new Error(`${p.method}: ${msg.error.message}`));
          else p?.resolve(msg.result);
        } else if (msg.method === 'Runtime.consoleAPICalled' || msg.method === 'Runtime.exceptionThrown') {
          this.console.push(JSON.stringify(msg.params).slice(0, 400));
        }
      }
    });
    child.on('exit', () => {
      for (const p of this.pending.values()) p.reject(new Error(`${p.method}: chromium exited`));
      this.pending.clear();
    });
  }

  /** Starts chromium headless with a throwaway profile. The caller owns it: close() kills it and removes the profile. */
  static async launch(): Promise<Browser> {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found (scripts/install-deps.sh installs Debian's chromium)`);
    const profile = mkdtempSync(join(tmpdir(), 'membrane-ui-chromium-'));
    const child = spawn(CHROMIUM, [
      '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--no-default-browser-check',
      '--disable-extensions', '--disable-background-networking', '--mute-audio', '--remote-debugging-pipe', `--user-data-dir=${profile}`, 'about:blank',
    ], { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'], detached: true });
    child.stderr!.resume();
    // Its own process group (its zygote and renderers too): killed whole, also if this process exits first.
    const killGroup = () => { try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ } };
    process.once('exit', killGroup);
    child.once('exit', () => process.off('exit', killGroup));
    const b = new Browser(child, profile);
    await b.send('Browser.getVersion');
    return b;
  }

  send<T = Record<string, unknown>>(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<T> {
    const id = ++this.seq;
    const input = this.child.stdio[3] as Writable;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, method });
      input.write(`${JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) })}\0`);
    });
  }

  /** A new tab of the given size, attached (flat session). */
  async newPage(width = 1600, height = 1000): Promise<Page> {
    const { targetId } = await this.send<{ targetId: string }>('Target.createTarget', { url: 'about:blank' });
    const { sessionId } = await this.send<{ sessionId: string }>('Target.attachToTarget', { targetId, flatten: true });
    const page = new Page(this, sessionId);
    await page.send('Page.enable');
    await page.send('Runtime.enable');
    await page.send('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor: 1, mobile: false });
    return page;
  }

  async close(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const gone = new Promise((r) => this.child.once('exit', r));
      try { process.kill(-this.child.pid!, 'SIGKILL'); } catch { this.child.kill('SIGKILL'); }
      await gone;
    }
    // A renderer may still be flushing into the profile for a moment after the browser died: remove it, and again.
    rmSync(this.profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    await new Promise((r) => setTimeout(r, 500));
    rmSync(this.profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  }
}

export class Page {
  constructor(private readonly browser: Browser, private readonly sessionId: string) {}

  send<T = Record<string, unknown>>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    return this.browser.send<T>(method, params, this.sessionId);
  }

  async goto(url: string): Promise<void> {
    const r = await this.send<{ errorText?: string }>('Page.navigate', { url });
    if (r.errorText) throw new Error(`navigate to ${url}: ${r.errorText}`);
  }

  /** Evaluates `expr` in the page (awaiting a promise), returning its value as JSON. */
  async evaluate<T = unknown>(expr: string): Promise<T> {
    const r = await this.send<{ result: { value?: unknown }; exceptionDetails?: { text: string; exception?: { description?: string } } }>('Runtime.evaluate', { expression: expr, awaitPromise: true, returnByValue: true });
    if (r.exceptionDetails) throw new Error(`evaluate ${expr.slice(0, 80)}: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
    return r.result.value as T;
  }

  /** Polls `expr` until it is truthy; returns its value. Fails with `what` after `timeoutMs`. */
  async waitFor<T = unknown>(expr: string, what: string, timeoutMs = 15_000): Promise<T> {
    const end = Date.now() + timeoutMs;
    let last: unknown;
    for (;;) {
      let v: unknown;
      try {
        v = await this.evaluate(expr);
        last = v;
      } catch (e) {
        last = (e as Error).message; // the page may be navigating: try again
      }
      if (v) return v as T;
      if (Date.now() > end) throw new Error(`waiting for ${what}: not seen within ${timeoutMs / 1000} s (last: ${JSON.stringify(last)})`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Clicks the first element matching `selector` (as a user's click: the element's click()). */
  async click(selector: string): Promise<void> {
    const ok = await this.evaluate<boolean>(`(() => { const e = document.querySelector(${JSON.stringify(selector)}); if (!e) return false; e.click(); return true; })()`);
    if (!ok) throw new Error(`click ${selector}: no such element`);
  }

  /** Sets a form control's value and fires input/change, as typing or choosing would. */
  async fill(selector: string, value: string): Promise<void> {
    const ok = await this.evaluate<boolean>(`(() => { const e = document.querySelector(${JSON.stringify(selector)}); if (!e) return false; e.value = ${JSON.stringify(value)};
      e.dispatchEvent(new Event('input', { bubbles: true })); e.dispatchEvent(new Event('change', { bubbles: true })); return true; })()`);
    if (!ok) throw new Error(`fill ${selector}: no such element`);
  }

  async screenshot(path: string): Promise<void> {
    const { data } = await this.send<{ data: string }>('Page.captureScreenshot', { format: 'png' });
    writeFileSync(path, Buffer.from(data, 'base64'));
  }
}
