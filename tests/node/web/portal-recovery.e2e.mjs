// Key loss in the portal (see test_portal.py::test_portal_wallet_recovery): a contract
// wallet signs in (ERC-1271), guardians approve in their own portal, the owner cancels a
// rogue recovery, the real one completes after the delay, and the keys swap roles.
import assert from "node:assert/strict";
import { assertNoProblems, env, injectWallet, launch, newPage } from "./browser.mjs";
import { check, PORTAL, text, waitFor } from "./portal-steps.e2e.mjs";

/** A fresh page signed in as `account` (a contract wallet's address) with `key`. */
async function portal(browser, key, { account, width = 1280 } = {}) {
  const page = await newPage(browser, { width, height: 900 });
  const wallet = await injectWallet(page, key, { account });
  await page.goto(PORTAL);
  await page.click("#sign-in");
  await page.waitForSelector("#me");
  await page.click('a[href="#recovery"]');
  await page.waitForSelector("#my-wallet p");
  return { page, wallet };
}

async function approve(page, newOwner) {
  await page.fill("#recover-wallet", env.wallet);
  await page.fill("#recover-new-owner", newOwner);
  await page.click("#recover-review");
  await page.waitForSelector("#approve-words");
  const words = await text(page, "#approve-words");
  assert.ok(words.includes(env.wallet) && words.includes(newOwner), words);
  await page.click("#recover-approve");
  await waitFor(page, ".success", /^Approved/);
}

const browser = await launch();
try {
  // the owner key signs in as the contract wallet and sees its guardians
  const owner = await portal(browser, env.oldKey, { account: env.wallet });
  assert.equal(await text(owner.page, "#me"), env.wallet);
  assert.match(await text(owner.page, "#my-wallet"), /recoverable wallet/);
  assert.match(await text(owner.page, "#my-wallet"), /Any 2 of your 3 guardians/);
  assert.match(await text(owner.page, "#no-pending"), /No recovery is pending/);
  await check(owner.page, "portal-recovery-wallet");

  // two guardians approve a key the owner never asked for
  const guardians = [];
  for (const key of env.guardianKeys) guardians.push(await portal(browser, key));
  await approve(guardians[0].page, env.rogue);
  assert.match(await text(guardians[0].page, "#guardian-pending"), /1 of the 2 required guardians/);
  await check(guardians[0].page, "portal-recovery-guardian");
  await approve(guardians[1].page, env.rogue);
  assert.match(await text(guardians[1].page, "#guardian-pending"), /A recovery is pending: 2 of the 2/);
  assert.equal(guardians[1].wallet.lastTyped.primaryType, "ApproveRecovery");
  assert.equal(guardians[1].wallet.lastTyped.message.newOwner, env.rogue);
  assert.equal(guardians[1].wallet.lastTyped.domain.verifyingContract, env.wallet);

  // the owner sees it and cancels it (its key signs CancelRecovery)
  await owner.page.click('a[href="#records"]');
  await owner.page.click('a[href="#recovery"]');
  await owner.page.waitForSelector("#pending-recovery");
  assert.ok((await text(owner.page, "#pending-recovery")).includes(env.rogue));
  await check(owner.page, "portal-recovery-pending");
  await owner.page.click("#recovery-cancel");
  await waitFor(owner.page, ".success", /^Cancelled/);
  assert.equal(owner.wallet.lastTyped.primaryType, "CancelRecovery");
  await owner.page.waitForSelector("#no-pending");
  assertNoProblems(owner.page);

  // the real recovery: both approve the new key; after the delay one completes it
  for (const g of guardians) await approve(g.page, env.newOwner);
  const last = guardians[1].page;
  await waitFor(last, "#guardian-pending", /A recovery is pending/);
  // The eta is chain time, and the embedded chain's clock runs ahead of the wall clock
  // after bursts of blocks (one tx per block, strictly increasing timestamps): wait for
  // the eta the node reports, then the page must offer to complete within a few checks.
  const { pending } = await (await fetch(`${env.url}/wallets/${env.wallet}`)).json();
  assert.equal(pending.new_owner, env.newOwner);
  assert.ok(pending.eta > 0, JSON.stringify(pending));
  const early = pending.eta * 1000 - Date.now();
  assert.ok(early < 60_000, `the eta is ${early} ms ahead of the wall clock`);
  await last.waitForTimeout(Math.max(0, early) + 1000);
  for (let i = 0; !(await last.locator("#recovery-finalize").count()); i++) {
    assert.ok(i < 20, `the recovery never became ready (eta ${pending.eta}, now ${Date.now() / 1000})`);
    await last.click("#recovery-check");
    await last.waitForTimeout(500);
  }
  await check(last, "portal-recovery-ready");
  await last.click("#recovery-finalize");
  await waitFor(last, ".success", /^Done: the wallet .* is now controlled by the key/);
  assert.ok((await text(last, ".success")).includes(env.newOwner));
  for (const g of guardians) assertNoProblems(g.page);

  // the new key signs in as the wallet and sees its records; the old key no longer can
  const renewed = await portal(browser, env.newKey, { account: env.wallet, width: 390 });
  assert.ok((await text(renewed.page, "#my-wallet")).includes(`controlled by the key ${env.newOwner}`));
  await check(renewed.page, "portal-recovery-phone-after");
  await renewed.page.click('a[href="#records"]');
  await waitFor(renewed.page, "#records", /allergy/);
  assertNoProblems(renewed.page);

  const lost = await newPage(browser);
  await injectWallet(lost, env.oldKey, { account: env.wallet });
  await lost.goto(PORTAL);
  await lost.click("#sign-in");
  await waitFor(lost, ".error", /could not confirm/);
  assert.equal(await lost.locator("#me").count(), 0);
  await check(lost, "portal-recovery-old-key-refused");
  assertNoProblems(lost);
} finally {
  await browser.close();
}
