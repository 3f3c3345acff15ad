import { chromium, type Browser } from 'playwright-core';

/** Debian's Chromium: playwright-core drives it, nothing is downloaded. */
export const CHROMIUM_PATH = '/usr/bin/chromium';

/**
 * A headless Chromium for browser tests. `--no-sandbox`: tests run as root in containers, where Chromium's
 * sandbox cannot start.
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: ['--no-sandbox'] });
}
