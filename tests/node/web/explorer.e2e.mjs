// The auditor explorer, as an auditor uses it: sign in (bad tokens refused in words), filter
// by patient, record, actor, event type and time (the rows are the API's rows for the same
// filter), page through the trail with the keyboard, verify a record (green, with its proof),
// charts that show /audit/stats' numbers, CSV and FHIR exports, phone width, sign out.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { assertAccessible, assertNoProblems, baseUrl, env, launch, newPage, screenshot } from "./browser.mjs";
import {
  api,
  apiJson,
  applyFilter,
  assertNoSidewaysScroll,
  key,
  parseCsv,
  q,
  rowsOnPage,
  settled,
  shotOf,
  signIn,
  utcInput,
} from "./explorer-steps.e2e.mjs";

const [alice, bobPatient] = env.patients;
const { bob } = env.actors;
const records = env.records;

async function expectRows(page, filter, what) {
  const response = await api(`/audit/events${q({ ...filter, limit: 1000 })}`);
  const expected = (await response.json()).map(key);
  assert.deepEqual(await rowsOnPage(page), expected, `${what}: the page's rows are the API's`);
  const status = await page.textContent("#trail-status");
  assert.match(status, new RegExp(`of ${response.headers.get("x-total-count")}\\b|No events match`), `${what}: ${status}`);
  return expected;
}

async function download(page, button) {
  const [file] = await Promise.all([page.waitForEvent("download"), page.click(button)]);
  await page.waitForFunction(() => /^Saved /.test(document.querySelector("#export-status")?.textContent ?? ""));
  return { name: file.suggestedFilename(), body: readFileSync(await file.path(), "utf8") };
}

const browser = await launch();
try {
  const page = await newPage(browser, { width: 1280, height: 900 });

  // ---- sign in: the page, then tokens it refuses in plain words
  await page.goto(`${baseUrl}/web/explorer/`);
  await page.waitForSelector("#token");
  assert.equal(await page.evaluate(() => document.activeElement?.id), "token", "the token field has focus");
  await assertAccessible(page, "sign-in");
  await screenshot(page, "explorer-signin-1280");
  const refusal = async (token, sentence) => {
    await page.fill("#token", token);
    await page.click("#signin button[type=submit]");
    await page.waitForFunction((s) => document.querySelector("#signin-message")?.textContent.includes(s), sentence);
    assert.equal(await page.getAttribute("#token", "aria-invalid"), "true");
    assert.equal(await page.evaluate(() => sessionStorage.length), 0, "a refused token is not kept");
  };
  await refusal("", "Paste your auditor API token first.");
  await refusal("hello there", "does not look like an API token");
  await refusal(`emr_${"x".repeat(43)}`, "does not accept this token");
  await refusal(env.hospitalToken, "not an auditor token");
  await assertAccessible(page, "sign-in refused");
  await screenshot(page, "explorer-signin-refused-1280");
  assert.equal(await page.getAttribute("#signin-message", "role"), "alert");

  // ---- signed in: the whole trail, oldest first, as the API lists it
  await signIn(page, `Bearer ${env.auditorToken}`); // pasted with its "Bearer " prefix
  assert.equal(await page.evaluate(() => sessionStorage.getItem("emr-explorer-token")), env.auditorToken);
  const all = await expectRows(page, {}, "no filter");
  assert.ok(all.length > 10);
  await assertAccessible(page, "trail");
  await screenshot(page, "explorer-trail-1280");

  // ---- filters: patient, event type, record, actor, time
  const byPatient = await (async () => {
    await applyFilter(page, { patient: alice });
    return expectRows(page, { patient: alice }, "patient");
  })();
  assert.ok(byPatient.length > 0 && byPatient.length < all.length);
  await applyFilter(page, { patient: alice, event: "AccessRecorded" });
  const reads = await expectRows(page, { patient: alice, event: "AccessRecorded" }, "patient + event type");
  assert.equal(reads.length, 4); // ada granted, bob denied, alice herself, bob under break-glass
  assert.deepEqual(new Set(await page.$$eval("#trail-table tbody tr", (trs) => trs.map((t) => t.dataset.event))), new Set(["AccessRecorded"]));
  await applyFilter(page, { event: "BreakGlassOpened" });
  await expectRows(page, { event: "BreakGlassOpened" }, "break-glass");
  assert.match(await page.textContent("#trail-table tbody"), /unconscious in ER, bay 2/, "the break-glass reason is shown");
  await applyFilter(page, { record: records[0] });
  await expectRows(page, { record_id: records[0] }, "record");
  await applyFilter(page, { actor: bob });
  const byBob = await expectRows(page, { actor: bob }, "actor");
  assert.ok(byBob.length >= 3); // two denied reads, a break-glass, a read under it

  const events = await apiJson(`/audit/events${q({ limit: 1000 })}`);
  const first = events[0].timestamp;
  const last = events[events.length - 1].timestamp;
  assert.ok(last > first, "the seed spans more than one second");
  await applyFilter(page, { since: utcInput(last) });
  const late = await expectRows(page, { since: last }, "since");
  await applyFilter(page, { until: utcInput(first) });
  const early = await expectRows(page, { until: first }, "until");
  assert.ok(late.length > 0 && late.length < all.length && early.length > 0 && early.length < all.length);
  await applyFilter(page, { patient: alice, since: utcInput(first), until: utcInput(last) });
  await expectRows(page, { patient: alice, since: first, until: last }, "patient + time range");
  await assertAccessible(page, "filtered");

  // ---- a filter the page refuses before asking the node
  await page.fill("#f-patient", "0x1234");
  await page.fill("#f-since", utcInput(last));
  await page.fill("#f-until", utcInput(first));
  await page.click("#apply");
  const problem = await page.textContent("#filter-error");
  assert.match(problem, /patient must be a wallet address/);
  assert.match(problem, /end time is before the start time/);
  assert.equal(await page.evaluate(() => document.activeElement?.id), "f-patient");
  assert.equal(await page.getAttribute("#f-patient", "aria-invalid"), "true");
  await assertAccessible(page, "filter refused");
  await screenshot(page, "explorer-filter-refused-1280");

  // ---- the chain is down (the node answers 503): a sentence, no JSON, no stack trace
  const down = { status: 503, contentType: "application/json", body: JSON.stringify({ error: "chain_unavailable", detail: "ConnectionError at web3/providers/rpc.py:42" }) };
  await page.route("**/audit/events?*", (route) => route.fulfill(down));
  await page.route("**/audit/stats*", (route) => route.fulfill(down));
  await page.fill("#f-patient", "");
  await page.fill("#f-since", "");
  await page.fill("#f-until", "");
  await page.click("#apply");
  await page.waitForFunction(() => document.querySelector("#trail-error")?.textContent !== "");
  const trailError = await page.textContent("#trail-error");
  assert.equal(trailError, "The audit trail could not be loaded. The blockchain or a storage service is not reachable right now. Please try again later.");
  assert.match(await page.textContent("#stats-error"), /^The charts could not be loaded\. The blockchain or a storage service is not reachable/);
  assert.doesNotMatch(await page.textContent("main"), /ConnectionError|chain_unavailable|\{"/);
  await assertAccessible(page, "chain down");
  await screenshot(page, "explorer-chain-down-1280");
  await page.unrouteAll();

  // ---- keyboard: the filters in order, Enter applies; paging with Enter
  await page.reload();
  await page.waitForSelector("#filters");
  await settled(page);
  let reached = null;
  for (let i = 0; i < 12 && reached !== "f-patient"; i++) {
    await page.keyboard.press("Tab");
    reached = await page.evaluate(() => document.activeElement?.id);
  }
  assert.equal(reached, "f-patient", "Tab reaches the first filter");
  assert.notEqual(await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle), "none", "focus is visible");
  const order = [];
  for (let i = 0; i < 3; i++) {
    await page.keyboard.press("Tab");
    order.push(await page.evaluate(() => document.activeElement?.id));
  }
  assert.deepEqual(order, ["f-record", "f-actor", "f-event"]);
  await page.keyboard.press("Shift+Tab");
  await page.keyboard.press("Shift+Tab");
  await page.keyboard.press("Shift+Tab");
  await page.keyboard.type(alice);
  await page.keyboard.press("Enter");
  await settled(page);
  await expectRows(page, { patient: alice }, "typed and Enter");

  await page.fill("#f-patient", "");
  await page.selectOption("#f-limit", "5");
  await page.focus("#apply");
  await page.keyboard.press("Enter");
  await settled(page);
  const pages = Math.ceil(all.length / 5);
  assert.ok(pages >= 3);
  const seen = [...(await rowsOnPage(page))];
  assert.equal(seen.length, 5);
  assert.equal(await page.textContent("#page-number"), `Page 1 of ${pages}`);
  assert.ok(await page.isDisabled("#page-prev"));
  await page.focus("#page-next");
  for (let p = 2; p <= pages; p++) {
    await page.keyboard.press("Enter");
    await page.waitForFunction((n) => document.querySelector("#page-number")?.textContent.startsWith(`Page ${n} `), p);
    await settled(page);
    seen.push(...(await rowsOnPage(page)));
  }
  assert.deepEqual(seen, all, "every event once, in order, across the pages");
  assert.ok(await page.isDisabled("#page-next"));
  assert.equal(await page.evaluate(() => document.activeElement?.id), "page-prev", "focus moves on when Next ends");
  await page.keyboard.press("Enter");
  await page.waitForFunction((n) => document.querySelector("#page-number")?.textContent.startsWith(`Page ${n} `), pages - 1);
  await assertAccessible(page, "paging");
  await screenshot(page, "explorer-paging-1280");

  // ---- verify a record from its row: green, with the Merkle path and the transaction
  const rid = env.tamperRecord;
  await applyFilter(page, { record: rid, event: "RecordAnchored" });
  await page.click(`#trail-table button[aria-label="Verify record ${rid}"]`);
  await page.waitForSelector("#verdict");
  const expected = await apiJson(`/audit/records/${rid}/verify`);
  assert.equal(expected.verified, true);
  assert.equal(await page.getAttribute("#verdict", "data-verified"), "true");
  assert.match(await page.getAttribute("#verdict", "class"), /verdict-ok/);
  assert.match(await page.textContent("#verdict h3"), /Verified/);
  assert.equal(await page.textContent("#v-root"), expected.root);
  assert.equal(await page.textContent("#v-tx"), expected.tx_hash);
  assert.equal(await page.textContent("#v-batch"), String(expected.batch_id));
  assert.ok(expected.proof.length >= 1, "five records in the batches: a real path");
  assert.deepEqual(await page.$$eval("#v-proof li", (lis) => lis.map((li) => li.textContent)), expected.proof);
  assert.match(await page.textContent("#verdict"), /stored copy is intact/);
  await assertAccessible(page, "verified");
  await screenshot(page, "explorer-verified-1280");
  await shotOf(page.locator("section:has(#verify-h)"), "explorer-verified-panel-1280");

  // ---- charts: the numbers of /audit/stats, drawn and tabled
  await page.click("#clear");
  await settled(page);
  const stats = await apiJson("/audit/stats");
  const sum = (k) => stats.days.reduce((a, d) => a + d[k], 0);
  const totals = await page.$$eval("#stats-totals div", (ds) => Object.fromEntries(ds.map((d) => [d.dataset.total, Number(d.querySelector("dd").textContent)])));
  assert.deepEqual(totals, { reads: sum("reads"), denied: sum("denied"), break_glass: sum("break_glass"), anonymous_reads: stats.anonymous_reads });
  assert.deepEqual(totals, { reads: 3, denied: 2, break_glass: 1, anonymous_reads: 0 });
  const table = (chart) =>
    page.$$eval(`table[data-chart="${chart}"] tbody tr`, (trs) =>
      trs.map((tr) => [tr.querySelector("th").textContent, ...[...tr.querySelectorAll("td[data-series]")].map((td) => Number(td.textContent))]),
    );
  const perDay = await table("per-day");
  for (const d of stats.days) assert.deepEqual(perDay.find((r) => r[0] === d.day), [d.day, d.reads, d.denied], d.day);
  assert.equal(perDay.reduce((a, r) => a + r[2], 0), sum("denied"));
  const perHospital = await table("per-hospital");
  assert.deepEqual(perHospital.map((r) => r.slice(1)), stats.hospitals.map((x) => [x.reads, x.denied]));
  const breakGlass = await table("break-glass");
  assert.deepEqual(breakGlass.map((r) => r[1]), stats.hospitals.filter((x) => x.break_glass > 0).map((x) => x.break_glass));
  // The bars themselves add up to the same numbers.
  const drawn = await page.$$eval('figure[data-chart="per-day"] rect[data-series]', (rs) =>
    rs.reduce((acc, r) => ({ ...acc, [r.dataset.series]: (acc[r.dataset.series] ?? 0) + Number(r.dataset.value) }), {}),
  );
  assert.deepEqual(drawn, { "Granted reads": sum("reads"), "Denied reads": sum("denied") });
  for (const chart of ["per-day", "per-hospital", "break-glass"]) {
    const label = await page.$eval(`figure[data-chart="${chart}"] svg`, (svg) => ({
      role: svg.getAttribute("role"),
      text: svg.getAttribute("aria-labelledby").split(" ").map((id) => document.getElementById(id)?.textContent).join(" "),
    }));
    assert.equal(label.role, "img");
    assert.match(label.text, /in all\. The table below lists every number\./, chart);
  }
  // The charts follow the patient filter.
  await applyFilter(page, { patient: bobPatient });
  const bobStats = await apiJson(`/audit/stats${q({ patient: bobPatient })}`);
  assert.equal(Number(await page.textContent('#stats-totals [data-total="denied"] dd')), bobStats.days.reduce((a, d) => a + d.denied, 0));
  assert.equal(Number(await page.textContent('#stats-totals [data-total="reads"] dd')), 0);
  await applyFilter(page, {});
  await page.click('figure[data-chart="per-day"] summary');
  await assertAccessible(page, "charts");
  await shotOf(page.locator("section:has(#charts-h)"), "explorer-charts-1280");

  // ---- CSV: the file is the API's CSV byte for byte, and its rows are the JSON rows
  await applyFilter(page, { patient: alice });
  const csv = await download(page, "#export-csv");
  assert.equal(csv.name, "audit-events.csv");
  const apiCsv = await (await api(`/audit/events/csv${q({ patient: alice })}`, { accept: "text/csv" })).text();
  assert.equal(csv.body, apiCsv, "the downloaded CSV is the node's");
  const [header, ...rows] = parseCsv(csv.body.trimEnd());
  assert.deepEqual(header, ["block_number", "timestamp", "time_utc", "event", "contract", "tx_hash", "log_index", "patient", "record_id", "actor", "granted", "reason", "args_json"]);
  const json = await apiJson(`/audit/events${q({ patient: alice, limit: 1000 })}`);
  const col = (name) => header.indexOf(name);
  assert.deepEqual(
    rows.map((r) => [r[col("tx_hash")], Number(r[col("log_index")]), r[col("event")], Number(r[col("block_number")]), Number(r[col("timestamp")])]),
    json.map((e) => [e.tx_hash, e.log_index, e.event, e.block_number, e.timestamp]),
  );
  assert.match(await page.textContent("#export-status"), new RegExp(`with ${json.length} events`));
  // …and with the event type filter too.
  await applyFilter(page, { event: "AccessRecorded" });
  const csvReads = await download(page, "#export-csv");
  assert.equal(csvReads.body, await (await api(`/audit/events/csv${q({ event: "AccessRecorded" })}`, { accept: "text/csv" })).text());

  // ---- FHIR: a Bundle of AuditEvents; patient, record, actor, time at the node, event type here
  await applyFilter(page, { patient: alice });
  const fhirAll = await download(page, "#export-fhir");
  assert.equal(fhirAll.name, "audit-events.fhir.json");
  const bundle = JSON.parse(fhirAll.body);
  assert.equal(bundle.resourceType, "Bundle");
  assert.ok(bundle.entry.length > 0 && bundle.entry.every((e) => e.resource.resourceType === "AuditEvent"));
  const direct = await apiJson(`/fhir/AuditEvent${q({ patient: `Patient/${alice}`, _count: 1000 })}`, { accept: "application/fhir+json" });
  assert.equal(bundle.total, direct.total);
  assert.deepEqual(new Set(bundle.entry.map((e) => e.resource.id)), new Set(direct.entry.map((e) => e.resource.id)));
  const chainOf = (resource) => {
    const details = resource.entity.find((x) => x.type?.code === "chain-transaction").detail;
    const get = (t) => details.find((d) => d.type === t).valueString;
    return `${get("event")}@${get("blockNumber")}#${get("logIndex")}`;
  };
  // Every JSON event about the patient is there (the trail's own view of the same filter).
  assert.deepEqual(
    bundle.entry.map((e) => chainOf(e.resource)),
    json.map((e) => `${e.event}@${e.block_number}#${e.log_index}`),
    "oldest first, one AuditEvent per event",
  );
  await applyFilter(page, { patient: alice, event: "AccessRecorded", since: utcInput(first) });
  const fhirReads = JSON.parse((await download(page, "#export-fhir")).body);
  const jsonReads = await apiJson(`/audit/events${q({ patient: alice, event: "AccessRecorded", since: first, limit: 1000 })}`);
  assert.equal(fhirReads.total, jsonReads.length);
  assert.deepEqual(fhirReads.entry.map((e) => chainOf(e.resource)), jsonReads.map((e) => `${e.event}@${e.block_number}#${e.log_index}`));
  assert.match(await page.textContent("#export-help"), /FHIR export asks the node's FHIR AuditEvent search for the patient, record, actor and time filters/);
  await assertAccessible(page, "exported");
  assertNoProblems(page);

  // ---- phone width: the same pages at 390 px
  const phone = await newPage(browser, { width: 390, height: 844 });
  await phone.goto(`${baseUrl}/web/explorer/`);
  await phone.waitForSelector("#token");
  await assertNoSidewaysScroll(phone, 390);
  await screenshot(phone, "explorer-signin-390");
  await signIn(phone);
  await applyFilter(phone, { patient: alice, limit: 5 });
  await assertNoSidewaysScroll(phone, 390);
  await assertAccessible(phone, "trail at 390 px");
  await screenshot(phone, "explorer-trail-390");
  await phone.fill("#v-record", rid);
  await phone.click("#verify");
  await phone.waitForSelector("#verdict");
  assert.equal(await phone.getAttribute("#verdict", "data-verified"), "true");
  await assertNoSidewaysScroll(phone, 390);
  await assertAccessible(phone, "verified at 390 px");
  await shotOf(phone.locator("section:has(#verify-h)"), "explorer-verified-390");
  await shotOf(phone.locator("section:has(#charts-h)"), "explorer-charts-390");

  // ---- sign out: the token leaves the tab
  await phone.click("#sign-out");
  await phone.waitForSelector("#token");
  assert.match(await phone.textContent("#signin-message"), /signed out/);
  assert.equal(await phone.evaluate(() => sessionStorage.getItem("emr-explorer-token")), null);
  await assertAccessible(phone, "signed out");
  await screenshot(phone, "explorer-signed-out-390");
  assertNoProblems(phone);
} finally {
  await browser.close();
}
