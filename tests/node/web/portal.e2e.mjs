// The patient portal, used as a patient would: see test_portal.py for the seeded state.
import assert from "node:assert/strict";
import { Wallet } from "ethers";
import { assertNoProblems, baseUrl, env, injectWallet, launch, newPage } from "./browser.mjs";
import { check, PORTAL, text, waitFor } from "./portal-steps.e2e.mjs";

const DECLINED = "You declined the signature in your wallet; nothing was changed.";
const EXPIRED = "Your session has expired or is not valid. Please sign in again.";
const CHAIN_DOWN = "The blockchain or a storage service is not reachable right now. Please try again later.";

async function call(method, path, { token, body } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(`${baseUrl}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, text, json: () => JSON.parse(text) };
}

/** A wallet session for `key`, made outside the browser (the grantee's own device). */
async function siwe(key) {
  const w = new Wallet(key);
  const { message } = (await call("POST", "/auth/challenge", { body: { address: w.address } })).json();
  const login = await call("POST", "/auth/login", { body: { message, signature: await w.signMessage(message) } });
  assert.equal(login.status, 200, login.text);
  return login.json().token;
}

async function signIn(page) {
  await page.goto(PORTAL);
  await page.click("#sign-in");
  await page.waitForSelector("#me");
  await page.waitForSelector("#records tbody tr");
  await page.waitForFunction(() => !document.querySelector("#records")?.textContent?.includes("Checking"));
}

/** Press Tab until `selector` has focus (keyboard only; fails after `max` presses). */
async function tabTo(page, selector, max = 40) {
  for (let i = 0; i < max; i++) {
    if (await page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector)) return;
    await page.keyboard.press("Tab");
  }
  assert.fail(`could not reach ${selector} with Tab`);
}

const formatted = (page, t) =>
  page.evaluate((s) => new Date(s * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }), t);

const browser = await launch();
try {
  // ---------------------------------------------------------------- first visit (1280 px)
  const page = await newPage(browser, { width: 1280, height: 900 });
  const wallet = await injectWallet(page, env.patientKey, { chainId: env.chainId });
  const me = wallet.address();
  await page.goto(PORTAL);
  await page.waitForSelector("#sign-in");
  await check(page, "portal-signin");

  // a refused signature is a sentence, and nothing happens
  wallet.refuse = true;
  await page.click("#sign-in");
  await waitFor(page, ".error", /declined/);
  assert.equal(await text(page, ".error"), DECLINED);
  assert.equal(await page.locator("#me").count(), 0);
  await check(page, "portal-signin-declined");

  await page.click("#sign-in");
  await page.waitForSelector("#me");
  assert.equal(await text(page, "#me"), me);
  await page.waitForSelector("#records tbody tr");
  await page.waitForFunction(() => !document.querySelector("#records")?.textContent?.includes("Checking"));
  assert.equal(await page.locator("#records tbody tr").count(), 3);
  const labRow = page.locator(`#records tr[data-record="${env.labRecord}"]`);
  assert.match(await labRow.innerText(), /lab/);
  assert.match(await labRow.innerText(), /Sealed/);
  assert.match(await labRow.innerText(), /Test General/);

  // the first sign-in shows the break-glass opened before it, with its reason
  await page.waitForSelector("#notices");
  assert.match(await text(page, "#notices"), /unconscious on arrival/);
  await check(page, "portal-records-notice");

  // open my record; its proof
  await labRow.getByRole("button", { name: /^Open/ }).click();
  await page.waitForSelector("#content pre");
  assert.equal(await text(page, "#content pre"), "potassium 4.1 mmol/L");
  await labRow.getByRole("button", { name: /^Proof/ }).click();
  await page.waitForSelector("#proof");
  assert.match(await text(page, "#proof"), /Merkle root on the blockchain/);
  await check(page, "portal-record-proof");

  // -------------------------------------------------------------------------- grant
  await page.click('a[href="#grant"]');
  await page.waitForSelector("#grant-form");
  await page.selectOption("#grantee-directory", env.ada.address);
  await page.check("#choice-scope-record");
  await page.selectOption("#scope-record", env.labRecord);
  await check(page, "portal-grant-form");
  await page.click("#grant-review");
  await page.waitForSelector("#grant-words");
  const words = await text(page, "#grant-words");
  await check(page, "portal-grant-review");

  wallet.refuse = true; // declined at the wallet: a sentence, nothing sent
  await page.click("#grant-sign");
  await waitFor(page, "#review .error", /declined/);
  assert.equal(await text(page, "#review .error"), DECLINED);

  await page.click("#grant-sign");
  await waitFor(page, "#review .success", /^Done/);
  await check(page, "portal-grant-done");
  // what the page said is what the wallet signed
  const signed = wallet.lastTyped;
  assert.equal(signed.primaryType, "Grant");
  assert.equal(signed.message.patient, me);
  assert.equal(signed.message.grantee, env.ada.address);
  assert.equal(signed.message.scopeKind, 0);
  assert.equal(signed.message.scope, env.labRecord);
  assert.ok(words.includes(env.ada.address), words);
  assert.ok(words.includes(await formatted(page, signed.message.expiresAt)), words);
  assert.match(words, /^You allow .* to read your lab record .* until /);
  const days = (signed.message.expiresAt - Date.now() / 1000) / 86400;
  assert.ok(days > 29.9 && days < 30.1, `30 days by default, got ${days}`);

  // the grantee reads it
  const adaSession = await siwe(env.ada.key);
  const read = await call("GET", `/records/${env.labRecord}/content`, { token: adaSession });
  assert.equal(read.status, 200, read.text);
  assert.equal(read.text, "potassium 4.1 mmol/L");

  // ----------------------------------------------------------- who may see; revoke
  await page.click('a[href="#access"]');
  await page.waitForSelector(`#access tr[data-grantee="${env.ada.address}"]`);
  const adaRow = page.locator(`#access tr[data-grantee="${env.ada.address}"]`);
  assert.match(await adaRow.innerText(), /lab record/);
  assert.match(await text(page, "#access"), /Emergency access/); // the live break-glass
  await check(page, "portal-access");
  await adaRow.getByRole("button", { name: /^Withdraw/ }).click();
  await waitFor(page, ".success", /^Withdrawn/);
  assert.equal(await page.locator(`#access tr[data-grantee="${env.ada.address}"]`).count(), 0);
  assert.equal(wallet.lastTyped.primaryType, "Revoke");
  assert.equal(wallet.lastTyped.message.grantee, env.ada.address);
  await check(page, "portal-access-withdrawn");

  const refused = await call("GET", `/records/${env.labRecord}/content`, { token: adaSession });
  assert.equal(refused.status, 403, refused.text);

  // ------------------------------------------------------------------------ timeline
  await page.click('a[href="#history"]');
  for (let i = 0; ; i++) {
    await page.waitForSelector("#timeline li");
    const kinds = await page.locator("#timeline li").evaluateAll((els) => els.map((e) => e.dataset.kind));
    if (kinds.includes("read") && kinds.includes("denied")) break;
    assert.ok(i < 40, `reads not on the timeline yet: ${kinds}`);
    await page.waitForTimeout(500);
    await page.click("#filter-apply");
    await page.waitForFunction(() => document.querySelector("#timeline-summary")?.textContent !== "Loading…");
  }
  const timeline = await text(page, "#timeline");
  assert.match(timeline, /read your lab record .* allowed by your permission for this record/);
  assert.match(timeline, /tried to read your lab record .* was refused/);
  assert.match(timeline, /You allowed .* to read your lab record/);
  assert.match(timeline, /You withdrew the permission of/);
  assert.match(timeline, /emergency access .* Reason given: “unconscious on arrival”/);
  assert.match(await text(page, "#timeline-summary"), /1 read refused, 1 emergency access, 0 anonymous reads/);
  await check(page, "portal-history");
  await page.selectOption("#filter-kind", "denied");
  const onlyDenied = await page.locator("#timeline li").evaluateAll((els) => els.map((e) => e.dataset.kind));
  assert.deepEqual(onlyDenied, ["denied"]);
  await page.selectOption("#filter-kind", "");
  await page.selectOption("#filter-record", env.labRecord);
  await page.click("#filter-apply");
  await page.waitForFunction(() => document.querySelector("#timeline-summary")?.textContent !== "Loading…");
  assert.ok(!(await text(page, "#timeline")).includes("unconscious"), "a whole-patient break-glass is not a lab-record event");
  const tomorrow = new Date(Date.now() + 86400_000).toISOString().slice(0, 10);
  await page.fill("#filter-from", tomorrow);
  await page.click("#filter-apply");
  await waitFor(page, "#timeline li", /^Nothing in the chosen period/);

  // -------------------------------------------------------------------- recovery page
  await page.click('a[href="#recovery"]');
  await page.waitForSelector("#my-wallet p");
  await check(page, "portal-recovery");

  // --------------------------------------------- sign out; a break-glass between visits
  await page.click("text=Sign out");
  await waitFor(page, ".info", /signed out/);
  const opened = await call("POST", "/break-glass", {
    token: env.hospitalToken,
    body: { patient: me, clinician: env.carol, approved_by: env.chief, duration_seconds: 600, reason: "car accident, ER bay 2" },
  });
  assert.equal(opened.status, 201, opened.text);
  await page.waitForTimeout(1100); // another second than the first visit's sign-in

  await signIn(page);
  await page.waitForSelector("#notices");
  const notices = await text(page, "#notices");
  assert.match(notices, /car accident, ER bay 2/);
  assert.ok(!notices.includes("unconscious on arrival"), `seen on the previous visit: ${notices}`);
  assert.match(notices, /since your last visit/);
  await check(page, "portal-notice");
  await page.click("#notices button");
  assert.equal(await page.locator("#notices").count(), 0);

  // ----------------------------------------------------- an expired session → sign-in
  const token = await page.evaluate(() => sessionStorage.getItem("emr-portal-token"));
  assert.equal((await call("POST", "/auth/logout", { token })).status, 204);
  await page.click('a[href="#access"]');
  await waitFor(page, ".error", /expired/);
  assert.equal(await text(page, ".error"), EXPIRED);
  await page.waitForSelector("#sign-in");
  await check(page, "portal-expired");

  // ---------------------------------------------------- the chain is down (one 503)
  await signIn(page);
  await page.route("**/consents/active**", (route) =>
    route.fulfill({ status: 503, contentType: "application/json", body: JSON.stringify({ error: "backend_unavailable", detail: "chain unreachable" }) }),
  );
  await page.click('a[href="#access"]');
  await waitFor(page, ".error", /not reachable/);
  assert.equal(await text(page, ".view .error"), CHAIN_DOWN);
  assert.doesNotMatch(await page.locator("main").innerText(), /\{|backend_unavailable|Traceback/);
  await check(page, "portal-chain-down");
  await page.unroute("**/consents/active**");

  // ------------------------------------------------------------ keyboard-only grant
  await page.click('a[href="#records"]');
  await page.waitForSelector("#records");
  await page.locator("#me").focus(); // a start point; from here on keys only
  await tabTo(page, 'a[href="#grant"]');
  await page.keyboard.press("Enter");
  await page.waitForSelector("#grant-form");
  await tabTo(page, "#choice-who-directory");
  await page.keyboard.press("ArrowDown"); // "by wallet address"
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement?.id), "grantee-address");
  await page.keyboard.type(env.ada.address.toLowerCase());
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement?.id), "choice-scope-record");
  await page.keyboard.press("ArrowDown"); // a category
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement?.id), "scope-category");
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement?.id), "duration");
  await page.keyboard.press("ArrowUp"); // 1 week
  await tabTo(page, "#grant-review");
  await page.keyboard.press("Enter");
  await page.waitForSelector("#grant-words");
  const kbWords = await text(page, "#grant-words");
  await tabTo(page, "#grant-sign");
  await page.keyboard.press("Enter");
  await waitFor(page, "#review .success", /^Done/);
  assert.equal(wallet.lastTyped.primaryType, "Grant");
  assert.equal(wallet.lastTyped.message.grantee, env.ada.address);
  assert.equal(wallet.lastTyped.message.scopeKind, 1);
  const week = (wallet.lastTyped.message.expiresAt - Date.now() / 1000) / 86400;
  assert.ok(week > 6.9 && week < 7.1, `1 week, got ${week}`);
  assert.match(kbWords, /all your records in the category “imaging”/);
  assert.ok(kbWords.includes(await formatted(page, wallet.lastTyped.message.expiresAt)), kbWords);
  const imaging = await call("GET", `/records?patient=${me}`, { token: await siwe(env.patientKey) });
  const imagingId = imaging.json().find((r) => r.category === "imaging").record_id;
  assert.equal((await call("GET", `/records/${imagingId}/content`, { token: adaSession })).status, 200);

  // a bad address is a sentence next to the field
  await page.click('a[href="#records"]');
  await page.click('a[href="#grant"]');
  await page.check("#choice-who-address");
  await page.fill("#grantee-address", "0x1234");
  await page.click("#grant-review");
  await page.waitForSelector("#grantee-address-error");
  assert.equal(await page.evaluate(() => document.activeElement?.id), "grantee-address");
  await check(page, "portal-grant-invalid");
  assertNoProblems(page);

  // -------------------------------------------------------------- phone width (390 px)
  const phone = await newPage(browser, { width: 390, height: 844 });
  await injectWallet(phone, env.patientKey, { chainId: env.chainId });
  await phone.goto(PORTAL);
  await phone.waitForSelector("#sign-in");
  await check(phone, "portal-signin-phone");
  await signIn(phone);
  await check(phone, "portal-records-phone");
  for (const [view, ready] of [
    ["access", "#access, #no-access"],
    ["grant", "#grant-form"],
    ["history", "#timeline li"],
    ["recovery", "#my-wallet p"],
  ]) {
    await phone.click(`a[href="#${view}"]`);
    await phone.waitForSelector(ready);
    await check(phone, `portal-${view}-phone`);
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `${view}: the page is wider than the phone by ${overflow}px`);
  }
  await phone.click('a[href="#grant"]');
  await phone.selectOption("#grantee-directory", env.ada.address);
  await phone.click("#grant-review");
  await phone.waitForSelector("#grant-words");
  await check(phone, "portal-grant-review-phone");
  // the chain was unreachable when the node got it: queued (202), then polled until relayed
  let polled = 0;
  await phone.route("**/consents/grant", async (route) => {
    const real = await route.fetch();
    assert.equal(real.status(), 200, await real.text());
    await route.fulfill({ status: 202, contentType: "application/json", body: JSON.stringify({ status: "queued", relay_id: 4242 }) });
  });
  await phone.route("**/consents/relays/4242", (route) => {
    polled += 1;
    const body = polled < 2 ? { status: "queued", relay_id: 4242 } : { status: "relayed", relay_id: 4242, tx_hash: `0x${"ab".repeat(32)}`, block_number: 99 };
    return route.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify(body) });
  });
  await phone.click("#grant-sign");
  await waitFor(phone, "#review .busy", /queued and will be sent/);
  await check(phone, "portal-grant-queued-phone");
  await waitFor(phone, "#review .success", /^Done/);
  assert.equal(polled, 2);
  assertNoProblems(phone);
} finally {
  await browser.close();
}
