// Stored XSS through both pages: a break-glass reason and a clinician's name hold markup
// that would run script if any page put text in as HTML. The pages must show it as text.
import assert from "node:assert/strict";
import { assertNoProblems, baseUrl, env, injectWallet, launch, newPage } from "./browser.mjs";

const REASON = env.reason;
const NAME = env.name;

async function assertInert(page, where) {
  // Nothing the payload carries exists as an element, and its script never ran.
  assert.equal(await page.evaluate(() => window.__xss), undefined, `${where}: the payload ran`);
  assert.equal(await page.locator("img[src='x'], iframe, svg[onload], [onerror]").count(), 0, `${where}: markup became elements`);
}

const browser = await launch();
try {
  // The patient's portal: the notice and the access history quote the reason and the name.
  const portal = await newPage(browser);
  await injectWallet(portal, env.patientKey);
  await portal.goto(`${baseUrl}/web/portal/`);
  await portal.click("#sign-in");
  await portal.waitForSelector("#notices");
  const notice = await portal.locator("#notices").innerText();
  assert.ok(notice.includes(REASON), `the notice quotes the reason as text: ${notice}`);
  assert.ok(notice.includes(NAME), `the notice names the clinician as text: ${notice}`);
  await assertInert(portal, "portal notice");
  await portal.click('a[href="#history"]');
  await portal.waitForFunction((r) => document.body.innerText.includes(r), REASON);
  await assertInert(portal, "portal history");
  assertNoProblems(portal);

  // The auditor's explorer: the trail row discloses the reason.
  const explorer = await newPage(browser);
  await explorer.goto(`${baseUrl}/web/explorer/`);
  await explorer.fill("#token", env.auditorToken);
  await explorer.click("#signin button[type=submit]");
  await explorer.waitForFunction((r) => document.body.innerText.includes(r), REASON);
  await assertInert(explorer, "explorer trail");
  assertNoProblems(explorer);
  console.log("ok: markup shown as text on both pages");
} finally {
  await browser.close();
}
