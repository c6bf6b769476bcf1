// Drives Debian's chromium with playwright-core for the Python test harness (element_call.py).
//
// Protocol: one JSON object per line. stdin: {"id": n, "op": "...", ...args};
// stdout: {"id": n, "ok": true, "result": ...} or {"id": n, "ok": false, "error": "..."}.
// Commands run concurrently. When stdin closes, every browser is closed and the process exits,
// so no chromium outlives the test session. Nothing is downloaded: the browser is the
// executable the caller names.
import readline from "node:readline";
import { chromium } from "playwright-core";

const browsers = new Map(); // id -> Browser
const pages = new Map(); // id -> {context, page, log: string[]}
let nextId = 1;
const LOG_LINES = 5000; // a whole call of Element Call's debug log (read when a test fails)

function send(msg) {
  process.stdout.write(JSON.stringify(msg) + "\n");
}

function pageOf(id) {
  const entry = pages.get(id);
  if (!entry) throw new Error(`no page ${id}`);
  return entry;
}

function remember(log, line) {
  log.push(`${new Date().toISOString().slice(11, 23)} ${line}`);
  if (log.length > LOG_LINES) log.splice(0, log.length - LOG_LINES);
}

const ops = {
  async launch({ executablePath, args }) {
    const browser = await chromium.launch({ executablePath, headless: true, args });
    const id = nextId++;
    browsers.set(id, browser);
    return { browser: id, version: browser.version() };
  },

  async newPage({ browser, storage, initScripts, viewport }) {
    const b = browsers.get(browser);
    if (!b) throw new Error(`no browser ${browser}`);
    const context = await b.newContext({
      permissions: ["microphone", "camera"],
      viewport: viewport ?? { width: 1280, height: 720 },
    });
    // localStorage before any page script runs: the Matrix session and EC's settings.
    await context.addInitScript((entries) => {
      try {
        for (const [k, v] of entries) window.localStorage.setItem(k, v);
      } catch (e) {
        // about:blank and other opaque origins have no localStorage
      }
    }, Object.entries(storage ?? {}));
    for (const content of initScripts ?? []) await context.addInitScript({ content });
    const page = await context.newPage();
    const log = [];
    page.on("console", (m) => remember(log, `[${m.type()}] ${m.text()}`));
    page.on("pageerror", (e) => remember(log, `[pageerror] ${e.message}`));
    page.on("requestfailed", (r) =>
      remember(log, `[requestfailed] ${r.method()} ${r.url()} ${r.failure()?.errorText ?? ""}`),
    );
    page.on("crash", () => remember(log, "[crash] the page crashed"));
    const id = nextId++;
    pages.set(id, { context, page, log });
    return { page: id };
  },

  async goto({ page, url, timeoutMs }) {
    await pageOf(page).page.goto(url, { timeout: timeoutMs ?? 30000, waitUntil: "load" });
    return null;
  },

  async click({ page, selector, timeoutMs }) {
    await pageOf(page).page.locator(selector).first().click({ timeout: timeoutMs ?? 10000 });
    return null;
  },

  async evaluate({ page, expression }) {
    return await pageOf(page).page.evaluate(expression);
  },

  async screenshot({ page, path }) {
    await pageOf(page).page.screenshot({ path, fullPage: false });
    return path;
  },

  async console({ page, lines }) {
    const { log } = pageOf(page);
    return log.slice(-(lines ?? 40));
  },

  async closePage({ page }) {
    const entry = pages.get(page);
    if (!entry) return null;
    pages.delete(page);
    await entry.context.close();
    return null;
  },

  async closeBrowser({ browser }) {
    const b = browsers.get(browser);
    browsers.delete(browser);
    if (b) await b.close();
    return null;
  },
};

async function shutdown() {
  await Promise.allSettled([...browsers.values()].map((b) => b.close()));
  process.exit(0);
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on("line", async (line) => {
  if (!line.trim()) return;
  let msg;
  try {
    msg = JSON.parse(line);
  } catch (e) {
    send({ id: null, ok: false, error: `bad JSON: ${e.message}` });
    return;
  }
  const op = ops[msg.op];
  if (!op) {
    send({ id: msg.id, ok: false, error: `unknown op ${msg.op}` });
    return;
  }
  try {
    send({ id: msg.id, ok: true, result: (await op(msg)) ?? null });
  } catch (e) {
    send({ id: msg.id, ok: false, error: String(e?.stack ?? e) });
  }
});
rl.on("close", shutdown);
process.on("SIGTERM", shutdown);
send({ id: 0, ok: true, result: { ready: true, node: process.version } });
