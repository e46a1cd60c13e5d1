// Helpers shared by the explorer's page scripts (imported, not run by itself): the API as the
// test sees it (to compare with what the page shows), and the page's own steps.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { baseUrl, env } from "./browser.mjs";

export async function api(pathAndQuery, { token = env.auditorToken, accept = "application/json", method = "GET" } = {}) {
  const r = await fetch(baseUrl + pathAndQuery, { method, headers: { Authorization: `Bearer ${token}`, Accept: accept } });
  assert.equal(r.status, 200, `${method} ${pathAndQuery} answered ${r.status}: ${await r.clone().text()}`);
  return r;
}

export async function apiJson(pathAndQuery, options) {
  return (await api(pathAndQuery, options)).json();
}

export function q(params) {
  const s = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "")).toString();
  return s ? `?${s}` : "";
}

export const key = (e) => `${e.tx_hash}#${e.log_index}`;

export async function rowsOnPage(page) {
  return page.$$eval("#trail-table tbody tr", (trs) => trs.map((tr) => `${tr.dataset.tx}#${tr.dataset.logIndex}`));
}

/** Waits until the trail and the charts have finished loading. */
export async function settled(page) {
  await page.waitForFunction(() => {
    const s = document.querySelector("#trail-status");
    const stats = document.querySelector("#stats");
    return s && s.textContent && !s.textContent.startsWith("Loading") && stats && !stats.hasAttribute("aria-busy");
  });
}

export async function signIn(page, token = env.auditorToken) {
  await page.goto(`${baseUrl}/web/explorer/`);
  await page.fill("#token", token);
  await page.click("#signin button[type=submit]");
  await page.waitForSelector("#filters");
  await settled(page);
}

/** Sets every filter field (empty ones cleared) and applies it. */
export async function applyFilter(page, f = {}) {
  await page.fill("#f-patient", f.patient ?? "");
  await page.fill("#f-record", f.record ?? "");
  await page.fill("#f-actor", f.actor ?? "");
  await page.selectOption("#f-event", f.event ?? "");
  await page.fill("#f-since", f.since ?? "");
  await page.fill("#f-until", f.until ?? "");
  await page.selectOption("#f-limit", String(f.limit ?? 50));
  await page.click("#apply");
  await settled(page);
}

/** Unix seconds as the datetime-local value the page reads as UTC. */
export function utcInput(unix) {
  return new Date(unix * 1000).toISOString().slice(0, 19);
}

export async function shotOf(locator, name) {
  const dir = env.artifacts ?? path.resolve("tests/node/web/artifacts");
  mkdirSync(dir, { recursive: true });
  await locator.screenshot({ path: path.join(dir, `${name}.png`) });
}

/** The page fits the viewport: no sideways scrolling at phone width. */
export async function assertNoSidewaysScroll(page, width) {
  const scroll = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(scroll <= width + 1, `the page is ${scroll}px wide at a ${width}px viewport`);
}

/** A CSV parser for the node's export (RFC 4180 quoting). */
export function parseCsv(text) {
  const rows = [];
  let row = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      row.push(cell);
      cell = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(cell);
      rows.push(row);
      row = [];
      cell = "";
    } else cell += c;
  }
  if (cell !== "" || row.length) {
    row.push(cell);
    rows.push(row);
  }
  return rows;
}
