import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContextOptions, type Page } from 'playwright-core';

/** Screenshots and other evidence of browser tests (gitignored). */
export const ARTIFACTS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../test-artifacts');

/** The system's Chromium (Debian `chromium`); CHROMIUM_PATH overrides. playwright-core downloads no browser. */
export function chromiumPath(): string {
  if (process.env.CHROMIUM_PATH) return process.env.CHROMIUM_PATH;
  try {
    return execFileSync('sh', ['-c', 'command -v chromium'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('chromium not found: install it (scripts/install.sh does) or set CHROMIUM_PATH');
  }
}

/**
 * Headless Chromium. `--no-sandbox`: the sandbox cannot start as root (CI containers); the pages come from the test's
 * own server. Autoplay is allowed without a gesture so a test can assert that audio plays.
 */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    timeout: 60_000,
    args: ['--no-sandbox', '--autoplay-policy=no-user-gesture-required'],
  });
}

export interface OpenedPage {
  page: Page;
  /** Uncaught exceptions in the page and console errors (CSP violations are reported there). */
  problems: string[];
  close(): Promise<void>;
}

/**
 * A fresh context (no shared storage between tests) with the page's problems collected. `contextOptions` passes
 * e.g. `extraHTTPHeaders: { authorization: 'Bearer …' }` for pages that need a key.
 */
export async function openPage(browser: Browser, url: string, contextOptions: BrowserContextOptions = {}): Promise<OpenedPage> {
  const context = await browser.newContext(contextOptions);
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
  });
  await page.goto(url);
  return { page, problems, close: () => context.close() };
}

/** Writes test-artifacts/<name>.png and returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const file = path.join(ARTIFACTS_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
