/**
 * Headless Chromium for the dashboard tests: Debian's `chromium` package (installed by .ci/run),
 * driven by puppeteer-core, which downloads no browser. Outside CI a missing chromium is a reason
 * to skip; under CI it is a failure.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import puppeteer, { type Browser, type Page } from "puppeteer-core";

export const CHROMIUM = "/usr/bin/chromium";
const ci = Boolean(process.env.CI);

/** "" when the browser tests run; otherwise the reason they are skipped, for the test's name. */
export const noBrowser = fs.existsSync(CHROMIUM) || ci ? "" : ` (skipped: no ${CHROMIUM}; apt-get install chromium)`;

export interface BrowserHandle {
  browser: Browser;
  page: Page;
  /** Another tab (waits bounded like the first one's). */
  newPage(): Promise<Page>;
  pid: number;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Starts headless chromium with its profile under `dir`, one page open; closed (then SIGKILLed by PID) on dispose. */
export async function openBrowser(dir: string): Promise<BrowserHandle> {
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: path.join(dir, "chromium-profile"),
    // --no-sandbox: CI runs as root, where chromium's sandbox will not start.
    // The rest: a tab in the background keeps its timers (the dashboard polls in each tab a test opens).
    args: [
      "--headless=new",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--no-first-run",
      "--window-size=1366,900",
      "--disable-background-timer-throttling",
      "--disable-renderer-backgrounding",
      "--disable-backgrounding-occluded-windows",
    ],
    defaultViewport: { width: 1366, height: 900 },
    timeout: 30_000,
  });
  const pid = browser.process()!.pid!;
  const newPage = async () => {
    const page = await browser.newPage();
    page.setDefaultTimeout(15_000);
    return page;
  };
  return {
    browser,
    page: await newPage(),
    newPage,
    pid,
    async [Symbol.asyncDispose]() {
      const closed = browser.close().catch(() => {});
      const timer = setTimeout(() => killPid(pid), 5000);
      await closed;
      clearTimeout(timer);
      killPid(pid);
    },
  };
}

function killPid(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/** Waits (bounded by the page's default timeout) until the first element matching `selector` has exactly `text` as its text. */
export async function waitForText(page: Page, selector: string, text: string): Promise<void> {
  // An expression, not a function: the tests are typed without the DOM library.
  const expression = `document.querySelector(${JSON.stringify(selector)})?.textContent === ${JSON.stringify(text)}`;
  try {
    await page.waitForFunction(expression, { polling: 100 });
  } catch (e) {
    const now = await page.evaluate(`document.querySelector(${JSON.stringify(selector)})?.textContent ?? null`).catch(() => "?");
    throw new Error(`${selector}: waited for ${JSON.stringify(text)}, shows ${JSON.stringify(now)} (${e})`);
  }
}

/**
 * Waits (bounded) until `selector` matches. Polls on a timer rather than puppeteer's
 * waitForSelector, which missed changes in a tab that was not in front.
 */
export async function waitForSelector(page: Page, selector: string): Promise<void> {
  try {
    await page.waitForFunction(`document.querySelector(${JSON.stringify(selector)}) !== null`, { polling: 100 });
  } catch (e) {
    throw new Error(`${selector}: still matches nothing (${e})`);
  }
}
