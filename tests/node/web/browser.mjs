// Shared browser helpers for the page tests: Debian's Chromium driven by playwright-core
// (no browser download), an EIP-1193 wallet that really signs, axe-core, screenshots.
import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { chromium } from "playwright-core";
import { Wallet, getBytes, TypedDataEncoder } from "ethers";

const require = createRequire(import.meta.url);
export const env = JSON.parse(process.env.EMR_WEB_TEST ?? "{}");
export const baseUrl = env.url;
const artifacts = env.artifacts ?? path.resolve("tests/node/web/artifacts");

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** A page whose console errors, failed requests and uncaught exceptions fail the test. */
export async function newPage(browser, { width = 1280, height = 900 } = {}) {
  const context = await browser.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  page.problems = [];
  page.on("pageerror", (e) => page.problems.push(`uncaught: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !/Failed to load resource/.test(m.text())) page.problems.push(`console: ${m.text()}`);
  });
  return page;
}

/**
 * Injects window.ethereum (EIP-1193). Signing happens in the test process with ethers, on
 * the real key: personal_sign (EIP-191) and eth_signTypedData_v4 (EIP-712). `state.refuse`
 * makes the next request fail as a user rejection (code 4001). `state.account` is the
 * address the wallet reports (a contract wallet's address when `signer` is its owner key).
 */
export async function injectWallet(page, privateKey, { account, chainId } = {}) {
  const state = { signer: new Wallet(privateKey), account, refuse: false, requests: [] };
  state.address = () => state.account ?? state.signer.address;
  await page.exposeFunction("__emrWallet", async (method, params) => {
    state.requests.push({ method, params });
    if (state.refuse && (method === "personal_sign" || method === "eth_signTypedData_v4" || method === "eth_requestAccounts")) {
      state.refuse = false;
      return { error: { code: 4001, message: "User rejected the request." } };
    }
    switch (method) {
      case "eth_requestAccounts":
      case "eth_accounts":
        return { result: [state.address()] };
      case "eth_chainId":
        return { result: `0x${(chainId ?? env.chainId ?? 1).toString(16)}` };
      case "personal_sign": {
        const [data] = params;
        const message = data.startsWith("0x") ? getBytes(data) : data;
        return { result: await state.signer.signMessage(message) };
      }
      case "eth_signTypedData_v4": {
        const typed = JSON.parse(params[1]);
        const types = { ...typed.types };
        delete types.EIP712Domain;
        // The page shows `typed` in plain words first; the test can read what was signed.
        state.lastTyped = typed;
        state.lastDigest = TypedDataEncoder.hash(typed.domain, types, typed.message);
        return { result: await state.signer.signTypedData(typed.domain, types, typed.message) };
      }
      default:
        return { error: { code: 4200, message: `unsupported method ${method}` } };
    }
  });
  await page.addInitScript(() => {
    const listeners = {};
    window.ethereum = {
      isEmrTestWallet: true,
      async request({ method, params }) {
        const answer = await window.__emrWallet(method, params ?? []);
        if (answer.error) {
          const err = new Error(answer.error.message);
          err.code = answer.error.code;
          throw err;
        }
        return answer.result;
      },
      on(event, fn) {
        (listeners[event] ??= []).push(fn);
      },
      removeListener(event, fn) {
        listeners[event] = (listeners[event] ?? []).filter((f) => f !== fn);
      },
    };
  });
  return state;
}

/** axe-core in the page; returns violations of impact serious or critical. */
export async function seriousViolations(page) {
  const source = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
  // Not a <script> tag: the pages' CSP forbids inline scripts (DevTools evaluation is not).
  await page.evaluate(source);
  const result = await page.evaluate(async () => window.axe.run(document, { resultTypes: ["violations"] }));
  return result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
}

export async function assertAccessible(page, what) {
  const bad = await seriousViolations(page);
  assert.deepEqual(
    bad.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`),
    [],
    `${what}: serious accessibility violations`,
  );
}

export async function screenshot(page, name) {
  mkdirSync(artifacts, { recursive: true });
  const file = path.join(artifacts, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

export function assertNoProblems(page) {
  assert.deepEqual(page.problems, [], "the page logged errors");
}
