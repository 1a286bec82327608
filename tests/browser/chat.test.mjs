// The demo chat room in a real browser: two headless Chromium pages open the chat page through
// wsgate over https://, join the same room and talk both ways over wss://.
//
// Run from the repository root after `cargo build` (or `cargo test`):
//   npm ci --prefix tests/browser && node --test tests/browser/
// Needs /usr/bin/chromium (Debian's `chromium` package). Chromium runs with no network access
// beyond loopback, with a fresh profile.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const WSGATE = process.env.WSGATE_BIN ?? join(root, 'target', 'debug', 'wsgate');
const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const OUT = join(root, 'target', 'browser');
const DEADLINE = 20_000;

// The flags the machine requires: headless, no sandbox as root, no network beyond loopback.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // The demo's certificate is self-signed.
  '--ignore-certificate-errors',
  '--host-resolver-rules=MAP localhost 127.0.0.1',
];

/** Starts `wsgate demo` on free loopback ports; resolves once it says where it listens. */
async function startDemo(want = { http: 0, https: 0, admin: 0 }) {
  const child = spawn(WSGATE, [
    'demo', '--log-format', 'json',
    '--http-listen', `127.0.0.1:${want.http}`,
    '--https-listen', `127.0.0.1:${want.https}`,
    '--admin-listen', `127.0.0.1:${want.admin}`,
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  const lines = [];
  const exited = new Promise((ok) => child.on('exit', (code, signal) => ok({ code, signal })));
  const ports = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`wsgate demo did not start:\n${lines.join('\n')}`)), DEADLINE);
    createInterface({ input: child.stderr }).on('line', (line) => {
      lines.push(line);
      let entry;
      try { entry = JSON.parse(line); } catch { return; }
      if (entry.message === 'wsgate listening') {
        clearTimeout(timer);
        const port = (addr) => Number(addr.split(':').pop());
        ok({ http: port(entry.http), https: port(entry.https), admin: port(entry.admin) });
      }
    });
    child.on('exit', () => fail(new Error(`wsgate demo exited:\n${lines.join('\n')}`)));
  });
  return {
    ...ports,
    lines,
    async stop() {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

async function enter(page, room, nick) {
  await page.fill('#room', room);
  await page.fill('#nick', nick);
  await page.click('#join');
  await page.waitForSelector('#state.connected', { timeout: DEADLINE });
}

async function say(page, text) {
  await page.fill('#text', text);
  await page.click('#send');
}

async function waitForLine(page, line) {
  await page.waitForFunction(
    (want) => [...document.querySelectorAll('#messages li')].some((li) => li.textContent === want),
    line,
    { timeout: DEADLINE },
  );
}

test('two Chromium pages chat through wsgate over wss://', async (t) => {
  const gw = await startDemo();
  const profile = await mkdtemp(join(tmpdir(), 'wsgate-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 640, height: 480 },
  });
  t.after(async () => {
    await browser.close();
    await rm(profile, { recursive: true, force: true });
  });

  const alice = await browser.newPage();
  const bob = await browser.newPage();

  // http:// lands on https:// through wsgate's redirect.
  const response = await alice.goto(`http://localhost:${gw.http}/`);
  assert.equal(alice.url(), `https://localhost:${gw.https}/`);
  const hop = response.request().redirectedFrom();
  assert.ok(hop, 'no redirect happened');
  assert.equal(hop.url(), `http://localhost:${gw.http}/`);
  assert.equal((await hop.response()).status(), 301);
  await bob.goto(`https://localhost:${gw.https}/`);
  // Before Join: a neutral badge and what to do, not a red "disconnected".
  assert.equal(await bob.textContent('#state'), 'not joined');
  assert.match(await bob.textContent('#messages'), /press Join to connect/);

  await enter(alice, 'e2e', 'alice');
  await enter(bob, 'e2e', 'bob');
  await waitForLine(alice, 'bob joined');

  await say(alice, 'hello bob, this is wss:// through wsgate');
  await waitForLine(bob, 'alice:hello bob, this is wss:// through wsgate');
  await say(bob, 'hi alice!');
  await waitForLine(alice, 'bob:hi alice!');
  await waitForLine(bob, 'bob:hi alice!');

  // The pages' WebSockets went through wsgate: its metrics count them.
  const metrics = await (await fetch(`http://127.0.0.1:${gw.admin}/metrics`)).text();
  const value = (series) => {
    const line = metrics.split('\n').find((l) => l.startsWith(`${series} `));
    return line ? Number(line.split(' ').pop()) : 0;
  };
  assert.equal(value('wsgate_websocket_connections_active{route="demo/chat"}'), 2, metrics);
  assert.ok(value('wsgate_websocket_upgrades_total{result="upgraded",route="demo/chat"}') >= 2, metrics);
  assert.ok(value('wsgate_http_redirects_total{kind="https"}') >= 1, metrics);

  // Screenshots: each page, and both side by side (the README's picture).
  await mkdir(OUT, { recursive: true });
  const shots = [await alice.screenshot(), await bob.screenshot()];
  await writeFile(join(OUT, 'chat-alice.png'), shots[0]);
  await writeFile(join(OUT, 'chat-bob.png'), shots[1]);
  const both = await browser.newPage();
  await both.setViewportSize({ width: 1296, height: 496 });
  const img = (png) => `<img src="data:image/png;base64,${png.toString('base64')}" style="border:1px solid #99a">`;
  await both.setContent(`<body style="margin:0;padding:7px;display:flex;gap:6px;background:#dde2ec">${img(shots[0])}${img(shots[1])}</body>`);
  await both.screenshot({ path: join(OUT, 'chat-demo.png') });

  // wsgate goes away (exit 0 on SIGTERM) and comes back: the pages reconnect by themselves.
  const exit = await gw.stop();
  assert.equal(exit.code, 0, gw.lines.join('\n'));
  await alice.waitForSelector('#state.reconnecting', { timeout: DEADLINE });
  const again = await startDemo(gw);
  t.after(() => again.stop());
  await alice.waitForSelector('#state.connected', { timeout: 45_000 });
  await bob.waitForSelector('#state.connected', { timeout: 45_000 });
  await say(bob, 'still here after the restart');
  await waitForLine(alice, 'bob:still here after the restart');
});
