// Steps shared by the portal's page tests (portal.e2e.mjs, portal-recovery.e2e.mjs); this
// module is imported by them and is not a test of its own.
import { assertAccessible, baseUrl, screenshot } from "./browser.mjs";

export const PORTAL = `${baseUrl}/web/portal/`;

/** axe on this state, then its screenshot. */
export async function check(page, name) {
  await assertAccessible(page, name);
  await screenshot(page, name);
}

/** The visible text of the first match, whitespace collapsed. */
export async function text(page, selector) {
  return (await page.locator(selector).first().innerText()).replace(/\s+/g, " ").trim();
}

/** Waits until an element matching `selector` has text matching `pattern`. */
export async function waitFor(page, selector, pattern, timeout = 20000) {
  await page.waitForFunction(
    ([sel, src]) => [...document.querySelectorAll(sel)].some((el) => new RegExp(src).test(el.textContent ?? "")),
    [selector, pattern.source],
    { timeout },
  );
}
