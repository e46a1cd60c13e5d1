// After the test flipped a bit of the record's stored ciphertext on disk: the explorer's
// verification turns red and says why, still showing the (valid) anchor and Merkle path.
// Then the auditor token is revoked: the next request sends the page back to sign in.
import assert from "node:assert/strict";
import { assertAccessible, assertNoProblems, baseUrl, env, launch, newPage, screenshot } from "./browser.mjs";
import { apiJson, shotOf, signIn } from "./explorer-steps.e2e.mjs";

const rid = env.tamperRecord;

async function verifyRed(page) {
  await page.fill("#v-record", rid);
  await page.focus("#v-record");
  await page.keyboard.press("Enter");
  await page.waitForSelector("#verdict");
  assert.equal(await page.getAttribute("#verdict", "data-verified"), "false");
  assert.match(await page.getAttribute("#verdict", "class"), /verdict-bad/);
  assert.match(await page.textContent("#verdict h3"), /Not verified/);
  const text = await page.textContent("#verdict");
  assert.match(text, /stored encrypted copy of this record was altered/);
  assert.match(text, /stored copy is NOT intact/);
  assert.match(text, /RecordRegistry contract accepts the Merkle proof/, "the anchor itself is still fine");
}

const browser = await launch();
try {
  const expected = await apiJson(`/audit/records/${rid}/verify`);
  assert.equal(expected.verified, false);
  assert.equal(expected.stored_content_intact, false);

  const page = await newPage(browser, { width: 1280, height: 900 });
  await signIn(page);
  await verifyRed(page);
  assert.deepEqual(await page.$$eval("#v-proof li", (lis) => lis.map((li) => li.textContent)), expected.proof);
  assert.equal(await page.textContent("#v-tx"), expected.tx_hash);
  await assertAccessible(page, "tampered");
  await screenshot(page, "explorer-tampered-1280");
  await shotOf(page.locator("section:has(#verify-h)"), "explorer-tampered-panel-1280");

  const phone = await newPage(browser, { width: 390, height: 844 });
  await signIn(phone);
  await verifyRed(phone);
  await assertAccessible(phone, "tampered at 390 px");
  await shotOf(phone.locator("section:has(#verify-h)"), "explorer-tampered-390");

  // The token is revoked while the page is open: back to sign in, with a sentence.
  const revoked = await fetch(`${baseUrl}/admin/tokens/${env.auditorTokenId}/revoke`, {
    method: "POST",
    headers: { Authorization: `Bearer ${env.adminToken}` },
  });
  assert.equal(revoked.status, 200);
  await page.click("#apply");
  await page.waitForSelector("#token");
  assert.match(await page.textContent("#signin-message"), /no longer accepted/);
  assert.equal(await page.evaluate(() => sessionStorage.getItem("emr-explorer-token")), null);
  await assertAccessible(page, "token revoked");
  await screenshot(page, "explorer-expired-1280");
  assertNoProblems(page);
  assertNoProblems(phone);
} finally {
  await browser.close();
}
