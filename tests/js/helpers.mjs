// Shared set-up for the JS tests: paths, the shared data sets, and headless Chromium with WebGPU.
import { existsSync, mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const sharedData = resolve(root, '..', 'shared', 'data');
export const artifacts = join(root, 'tests', 'artifacts');
mkdirSync(artifacts, { recursive: true });

/** Path of a shared data file, or null (with the reason printed) when the shared data are absent. */
export function sharedFile(name, t) {
  const p = join(sharedData, name);
  if (existsSync(p)) return p;
  t.skip(`../shared/data/${name} not found (the shared data sets sit beside the project, not in it)`);
  return null;
}

/** Debian's Chromium with WebGPU on SwiftShader (CPU emulation), as the toolchain note says. */
export async function launchChromium({ webgpu = true } = {}) {
  const { chromium } = await import('playwright-core');
  const userDir = mkdtempSync(join(tmpdir(), 'sclabel-chromium-'));
  const args = [
    '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--no-first-run', '--disable-quic',
    ...(webgpu ? ['--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader'] : ['--disable-webgpu']),
  ];
  const context = await chromium.launchPersistentContext(userDir, {
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args,
  });
  const close = async () => { await context.close(); rmSync(userDir, { recursive: true, force: true }); };
  return { context, close };
}

/** A page on the test harness (tests/js/harness.html): its uncaught errors and every request it or its workers make are recorded. */
export async function openHarness(browser, base) {
  const page = await browser.context.newPage();
  const errors = [];
  const requests = [];
  page.on('pageerror', (e) => errors.push(e));
  page.on('request', (r) => requests.push(r.url()));
  await page.goto(`${base}/tests/js/harness.html`);
  return { page, errors, requests };
}
