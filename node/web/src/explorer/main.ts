// The auditor explorer: sign in with an auditor API token, filter and page the on-chain audit
// trail, verify a record against its anchor, see accesses as charts, export CSV and FHIR.

import { Api, ApiError, query } from "../lib/api";
import { barChart, dayRange } from "../lib/charts";
import { clear, h, shortAddress } from "../lib/dom";
import { downloadCsv, downloadFhir } from "./download";
import {
  ADDRESS,
  type AuditEvent,
  EMPTY_FILTER,
  EVENT_NAMES,
  type Filter,
  RECORD_ID,
  type Stats,
  type Verification,
  eventActor,
  eventDetail,
  eventLabel,
  eventPatient,
  eventRecord,
  filterParams,
  shortRecord,
  formatUtc,
  parseUtcInput,
  toUtcInput,
} from "./model";

const api = new Api("emr-explorer-token");
const main = document.getElementById("main") as HTMLElement;
const account = document.getElementById("account") as HTMLElement;

const PAGE_SIZES = [5, 10, 25, 50, 100, 250, 1000];
const COLORS = { granted: "#0b5cad", denied: "#a3161b", breakGlass: "#7a4100" };
const EXPIRED = "Your token is no longer accepted: it may have expired or been revoked. Please sign in again.";

let filter: Filter = { ...EMPTY_FILTER };
let limit = 50;
let offset = 0;
let total = 0;
let redraw: (() => void) | null = null; // the charts again, at the new width
let resizeTimer = 0;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = window.setTimeout(() => redraw?.(), 150);
});

// ---------------------------------------------------------------- sign in and out

function showSignIn(message?: string, kind: "error" | "info" = "error"): void {
  api.token = null;
  clear(account);
  clear(main);
  const notice = h("div", { id: "signin-message", role: kind === "error" ? "alert" : "status" });
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": "token-help signin-message",
  });
  const form = h(
    "form",
    { id: "signin", novalidate: true },
    h("label", { for: "token" }, "Auditor API token"),
    input,
    h(
      "p",
      { id: "token-help", class: "hint" },
      "Paste the token your node's administrator gave you (it starts with emr_; they make one with “emr-node token create auditor”). It is kept only in this browser tab and removed when you sign out or close the tab.",
    ),
    h("button", { type: "submit" }, "Sign in"),
  );
  const say = (text: string, how: "error" | "info") => {
    notice.className = how === "error" ? "error" : "info";
    notice.setAttribute("role", how === "error" ? "alert" : "status");
    notice.textContent = text;
    input.setAttribute("aria-invalid", how === "error" ? "true" : "false");
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim().replace(/^Bearer\s+/i, "");
    const problem = tokenProblem(token);
    if (problem) {
      say(problem, "error");
      input.focus();
      return;
    }
    say("Checking the token…", "info");
    api.token = token;
    try {
      await api.request("GET", `/audit/events${query({ limit: 1 })}`);
    } catch (err) {
      api.token = null;
      say(signInError(err), "error");
      input.focus();
      return;
    }
    showExplorer();
  });
  main.append(
    h(
      "section",
      { class: "card signin", "aria-labelledby": "signin-h" },
      h("h2", { id: "signin-h" }, "Sign in"),
      h("p", {}, "The explorer shows the on-chain audit trail of this node: who read which record, consents, break-glass, anchors. It needs an auditor API token."),
      notice,
      form,
    ),
  );
  if (message) say(message, kind);
  input.focus();
}

function tokenProblem(token: string): string | null {
  if (!token) return "Paste your auditor API token first.";
  if (token.startsWith("emrs_")) return "This is a wallet session, not an API token. The explorer needs an auditor API token, which starts with emr_.";
  if (!/^emr_[A-Za-z0-9_-]{8,200}$/.test(token)) return "This does not look like an API token. An auditor API token starts with emr_ followed by letters, digits, - and _. Check that you copied all of it.";
  return null;
}

function signInError(err: unknown): string {
  if (err instanceof ApiError) {
    if (err.status === 401) return "The node does not accept this token: it is unknown, expired or revoked. Check that you copied all of it, or ask your administrator for a new one.";
    if (err.status === 403) return "This token is valid, but it is not an auditor token, so it cannot read the audit trail. Ask your administrator for a token with the auditor role.";
    return err.message;
  }
  return "Something went wrong. Please try again.";
}

function signOut(): void {
  api.token = null;
  filter = { ...EMPTY_FILTER };
  offset = 0;
  showSignIn("You are signed out. The token was removed from this browser tab.", "info");
}

/** Errors in a section's message box; an expired token sends the auditor back to sign in. */
function report(err: unknown, box: HTMLElement, prefix = ""): void {
  if (err instanceof ApiError && err.status === 401) {
    showSignIn(EXPIRED);
    return;
  }
  box.className = "error";
  box.textContent = `${prefix}${err instanceof ApiError ? err.message : "Something went wrong. Please try again."}`;
}

function quiet(box: HTMLElement): void {
  box.className = "";
  box.textContent = "";
}

// ---------------------------------------------------------------- the explorer

function field(id: string, label: string, control: HTMLInputElement | HTMLSelectElement, hint?: string): HTMLElement {
  if (hint) control.setAttribute("aria-describedby", `${id}-hint`);
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hint ? h("p", { id: `${id}-hint`, class: "hint" }, hint) : null);
}

function input(id: string, attrs: Record<string, string> = {}): HTMLInputElement {
  return h("input", { id, name: id, autocomplete: "off", spellcheck: "false", ...attrs });
}

function showExplorer(): void {
  clear(account);
  clear(main);
  account.append(h("button", { type: "button", class: "secondary on-dark", id: "sign-out", onclick: () => signOut() }, "Sign out"));

  // Filters
  const patient = input("f-patient", { placeholder: "0x…" });
  const record = input("f-record", { placeholder: "0x…" });
  const actor = input("f-actor", { placeholder: "0x…" });
  const eventType = h(
    "select",
    { id: "f-event", name: "f-event" },
    h("option", { value: "" }, "Any event"),
    ...Object.entries(EVENT_NAMES).map(([name, plain]) => h("option", { value: name }, `${plain} — ${name}`)),
  );
  const since = input("f-since", { type: "datetime-local", step: "1" });
  const until = input("f-until", { type: "datetime-local", step: "1" });
  const pageSize = h("select", { id: "f-limit", name: "f-limit" }, ...PAGE_SIZES.map((n) => h("option", { value: String(n) }, String(n))));
  pageSize.value = String(limit);
  const filterError = h("div", { id: "filter-error", role: "alert" });
  const form = h(
    "form",
    { id: "filters", novalidate: true, "aria-describedby": "filter-error" },
    h(
      "div",
      { class: "grid" },
      field("f-patient", "Patient", patient, "Wallet address: 0x and 40 hex digits."),
      field("f-record", "Record ID", record, "0x and 64 hex digits."),
      field("f-actor", "Actor", actor, "Reader, grantee, clinician or hospital address."),
      field("f-event", "Event type", eventType),
      field("f-since", "From (UTC)", since, "Inclusive, to the second."),
      field("f-until", "Until (UTC)", until, "Inclusive, to the second."),
      field("f-limit", "Events per page", pageSize),
    ),
    filterError,
    h("div", { class: "actions" }, h("button", { type: "submit", id: "apply" }, "Apply filter"), h("button", { type: "button", class: "secondary", id: "clear" }, "Clear filter")),
  );
  const controls: [HTMLInputElement | HTMLSelectElement, keyof Filter][] = [
    [patient, "patient"],
    [record, "record_id"],
    [actor, "actor"],
    [eventType, "event"],
  ];
  const fill = () => {
    for (const [el, key] of controls) el.value = String(filter[key] ?? "");
    since.value = filter.since === null ? "" : toUtcInput(filter.since);
    until.value = filter.until === null ? "" : toUtcInput(filter.until);
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const read = readFilter(patient, record, actor, eventType, since, until);
    for (const el of [patient, record, actor, since, until]) el.removeAttribute("aria-invalid");
    if ("problems" in read) {
      filterError.className = "error";
      filterError.textContent = read.problems.map((p) => p.text).join(" ");
      for (const p of read.problems) p.el.setAttribute("aria-invalid", "true");
      read.problems[0].el.focus();
      return;
    }
    quiet(filterError);
    filter = read.filter;
    limit = Number(pageSize.value);
    offset = 0;
    void refresh();
  });
  form.querySelector("#clear")!.addEventListener("click", () => {
    filter = { ...EMPTY_FILTER };
    offset = 0;
    fill();
    quiet(filterError);
    for (const el of [patient, record, actor, since, until]) el.removeAttribute("aria-invalid");
    void refresh();
  });

  // Events, paging, export
  const status = h("p", { id: "trail-status", role: "status", tabindex: "-1" });
  const trailError = h("div", { id: "trail-error", role: "alert" });
  const tableBox = h("div", { id: "trail-table" });
  const first = h("button", { type: "button", class: "secondary", id: "page-first" }, "First");
  const prev = h("button", { type: "button", class: "secondary", id: "page-prev" }, "Previous");
  const pageNo = h("span", { id: "page-number" });
  const next = h("button", { type: "button", class: "secondary", id: "page-next" }, "Next");
  const last = h("button", { type: "button", class: "secondary", id: "page-last" }, "Last");
  const paging = h("nav", { id: "paging", "aria-label": "Pages of events" }, first, prev, pageNo, next, last);
  const exportStatus = h("div", { id: "export-status", role: "status" });
  const csvButton = h("button", { type: "button", id: "export-csv" }, "Download CSV");
  const fhirButton = h("button", { type: "button", id: "export-fhir" }, "Download FHIR AuditEvents (JSON)");

  // Verify
  const verifyInput = input("v-record", { placeholder: "0x…" });
  const verifyResult = h("div", { id: "verify-result", "aria-live": "polite" });
  const verifyForm = h(
    "form",
    { id: "verify-form", novalidate: true },
    field("v-record", "Record ID", verifyInput, "0x and 64 hex digits; or press “Verify” on a row of the trail."),
    h("div", { class: "actions" }, h("button", { type: "submit", id: "verify" }, "Verify")),
  );

  // Charts
  const statsBox = h("div", { id: "stats" });
  const statsError = h("div", { id: "stats-error", role: "alert" });

  main.append(
    h(
      "nav",
      { class: "jump", "aria-label": "On this page" },
      h("a", { href: "#trail-h" }, "Audit trail"),
      h("a", { href: "#charts-h" }, "Charts"),
      h("a", { href: "#verify-h" }, "Verify a record"),
    ),
    h("section", { class: "card", "aria-labelledby": "filters-h" }, h("h2", { id: "filters-h" }, "Filter the audit trail"), form),
    h(
      "section",
      { class: "card", "aria-labelledby": "trail-h" },
      h("h2", { id: "trail-h", tabindex: "-1" }, "Audit events"),
      status,
      trailError,
      tableBox,
      paging,
      h(
        "div",
        { class: "export" },
        h("h3", {}, "Export this filter"),
        h(
          "p",
          { class: "hint", id: "export-help" },
          "Both files hold every event that matches the filter, not only this page. The CSV applies every filter. The FHIR export asks the node's FHIR AuditEvent search for the patient, record, actor and time filters and keeps only the chosen event type; batch anchors (they name no patient) are not FHIR AuditEvents and are left out.",
        ),
        h("div", { class: "actions" }, csvButton, fhirButton),
        exportStatus,
      ),
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "charts-h" },
      h("h2", { id: "charts-h", tabindex: "-1" }, "Accesses at a glance"),
      h("p", { class: "hint" }, "The charts follow the patient and time filters (not record, actor or event type). Days are in UTC."),
      statsError,
      statsBox,
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "verify-h" },
      h("h2", { id: "verify-h", tabindex: "-1" }, "Verify a record against its anchor"),
      h(
        "p",
        {},
        "Checks that the record's content hash is in a Merkle tree whose root this node anchored on the chain, that the RecordRegistry contract accepts the proof, and that the stored encrypted copy still decrypts to that hash.",
      ),
      verifyForm,
      verifyResult,
    ),
  );

  // ------------------------------------------------------------ behaviour

  const loadTrail = async (): Promise<void> => {
    status.textContent = "Loading events…";
    tableBox.setAttribute("aria-busy", "true");
    quiet(trailError);
    try {
      const response = await api.request("GET", `/audit/events${query({ ...filterParams(filter), limit, offset })}`);
      let rows = (await response.json()) as AuditEvent[];
      const counted = response.headers.get("X-Total-Count");
      if (counted === null) {
        // A node without paging answers with everything: page here.
        total = rows.length;
        rows = rows.slice(offset, offset + limit);
      } else {
        total = Number(counted);
      }
      if (rows.length === 0 && offset > 0 && total > 0) {
        offset = Math.max(0, Math.floor((total - 1) / limit) * limit);
        return loadTrail();
      }
      renderRows(rows);
      const pages = Math.max(1, Math.ceil(total / limit));
      const page = Math.floor(offset / limit) + 1;
      pageNo.textContent = `Page ${page} of ${pages}`;
      first.disabled = prev.disabled = offset === 0;
      next.disabled = last.disabled = offset + limit >= total;
      paging.hidden = total <= limit;
      status.textContent = total === 0 ? "No events match this filter." : `Showing events ${offset + 1}–${offset + rows.length} of ${total}${describeFilter()}.`;
    } catch (err) {
      clear(tableBox);
      status.textContent = "";
      paging.hidden = true;
      report(err, trailError, "The audit trail could not be loaded. ");
    } finally {
      tableBox.removeAttribute("aria-busy");
    }
  };

  const renderRows = (rows: AuditEvent[]): void => {
    clear(tableBox);
    if (rows.length === 0) return;
    const addressButton = (address: string | null, what: "patient" | "actor") => {
      if (!address) return h("span", { class: "muted" }, "—");
      return h(
        "button",
        {
          type: "button",
          class: "link mono",
          title: `Filter by ${what} ${address}`,
          "data-address": address,
          onclick: () => {
            filter = what === "patient" ? { ...filter, patient: address } : { ...filter, actor: address };
            offset = 0;
            fill();
            void refresh();
            patient.scrollIntoView?.();
          },
        },
        h("span", { class: "sr-only" }, `Filter by ${what} `),
        shortAddress(address),
      );
    };
    const body = h(
      "tbody",
      {},
      ...rows.map((e) => {
        const rid = eventRecord(e);
        return h(
          "tr",
          { "data-tx": e.tx_hash, "data-log-index": String(e.log_index), "data-event": e.event },
          h("td", { "data-label": "Time (UTC)" }, h("span", { class: "nowrap" }, formatUtc(e.timestamp)), h("br"), h("span", { class: "muted small" }, `block ${e.block_number}`)),
          h(
            "td",
            { "data-label": "Event" },
            h("span", { class: e.event === "AccessRecorded" && e.args.granted !== true ? "bad strong" : e.event === "BreakGlassOpened" ? "warn strong" : "strong" }, eventLabel(e)),
            h("br"),
            h("span", { class: "muted small mono" }, e.event),
          ),
          h("td", { "data-label": "Patient" }, addressButton(eventPatient(e), "patient")),
          h(
            "td",
            { "data-label": "Record" },
            rid
              ? h(
                  "span",
                  { class: "record" },
                  h("span", { class: "mono nowrap", title: rid }, shortRecord(rid)),
                  " ",
                  h("button", { type: "button", class: "link", "aria-label": `Verify record ${rid}`, onclick: () => void verify(rid, true) }, "Verify"),
                )
              : h("span", { class: "muted" }, "—"),
          ),
          h("td", { "data-label": "Actor" }, addressButton(eventActor(e), "actor")),
          h("td", { "data-label": "Details" }, eventDetail(e) || "—"),
          h("td", { "data-label": "Transaction" }, h("span", { class: "mono nowrap", title: e.tx_hash }, shortAddress(e.tx_hash)), h("span", { class: "muted small" }, ` #${e.log_index}`)),
        );
      }),
    );
    tableBox.append(
      h(
        "table",
        { class: "responsive trail" },
        h("caption", { class: "sr-only" }, "Audit events, oldest first"),
        h(
          "thead",
          {},
          h("tr", {}, ...["Time (UTC)", "Event", "Patient", "Record", "Actor", "Details", "Transaction"].map((t) => h("th", { scope: "col" }, t))),
        ),
        body,
      ),
    );
  };

  const describeFilter = (): string => {
    const parts: string[] = [];
    if (filter.patient) parts.push(`patient ${shortAddress(filter.patient)}`);
    if (filter.record_id) parts.push(`record ${shortRecord(filter.record_id)}`);
    if (filter.actor) parts.push(`actor ${shortAddress(filter.actor)}`);
    if (filter.event) parts.push(`event ${filter.event}`);
    if (filter.since !== null) parts.push(`from ${formatUtc(filter.since)}`);
    if (filter.until !== null) parts.push(`until ${formatUtc(filter.until)}`);
    return parts.length ? ` (${parts.join(", ")})` : "";
  };

  const go = async (to: number, from: HTMLButtonElement): Promise<void> => {
    offset = Math.max(0, to);
    await loadTrail();
    // Keep the keyboard where it was; a button that became disabled hands focus on.
    if (from.disabled) (from === first || from === prev ? next : prev).focus();
    if (document.activeElement === document.body || (document.activeElement as HTMLButtonElement)?.disabled) status.focus();
  };
  first.addEventListener("click", () => void go(0, first));
  prev.addEventListener("click", () => void go(offset - limit, prev));
  next.addEventListener("click", () => void go(offset + limit, next));
  last.addEventListener("click", () => void go(Math.floor((total - 1) / limit) * limit, last));

  const loadStats = async (): Promise<void> => {
    quiet(statsError);
    statsBox.setAttribute("aria-busy", "true");
    try {
      const stats = await api.get<Stats>(`/audit/stats${query({ patient: filter.patient, since: filter.since, until: filter.until })}`);
      renderStats(stats);
    } catch (err) {
      clear(statsBox);
      if (err instanceof ApiError && err.status === 404) {
        statsError.className = "info";
        statsError.textContent = "This node does not offer access statistics yet.";
      } else report(err, statsError, "The charts could not be loaded. ");
    } finally {
      statsBox.removeAttribute("aria-busy");
    }
  };

  const renderStats = (stats: Stats): void => {
    redraw = () => {
      if (statsBox.isConnected) renderStats(stats);
    };
    clear(statsBox);
    // Charts are drawn at their real width in pixels, so their text is the page's size.
    const wide = statsBox.clientWidth || 320;
    const twoUp = wide >= 760;
    const full = Math.min(wide, 960);
    const half = twoUp ? (wide - 24) / 2 : wide;
    const sum = (k: "reads" | "denied" | "break_glass") => stats.days.reduce((a, d) => a + d[k], 0);
    statsBox.append(
      h(
        "dl",
        { class: "totals", id: "stats-totals" },
        ...(
          [
            ["Granted reads", sum("reads"), "reads"],
            ["Denied reads", sum("denied"), "denied"],
            ["Break-glass", sum("break_glass"), "break_glass"],
            ["Anonymous reads", stats.anonymous_reads, "anonymous_reads"],
          ] as const
        ).map(([label, n, key]) => h("div", { "data-total": key }, h("dt", {}, label), h("dd", {}, String(n)))),
      ),
    );
    const days = dayRange(stats.days.map((d) => d.day));
    const byDay = new Map(stats.days.map((d) => [d.day, d]));
    const hospitals = stats.hospitals.map((x) => x.name ?? (ADDRESS.test(x.hospital) ? shortAddress(x.hospital) : `Hospital ${x.hospital}`));
    const withBreakGlass = stats.hospitals.filter((x) => x.break_glass > 0);
    statsBox.append(
      h(
        "div",
        { class: twoUp ? "charts two-up" : "charts" },
        barChart({
          id: "per-day",
          width: full,
          title: "Reads per day",
          categories: days,
          categoryLabel: "Day (UTC)",
          layout: "columns",
          empty: "No reads in this period.",
          series: [
            { name: "Granted reads", color: COLORS.granted, values: days.map((d) => byDay.get(d)?.reads ?? 0) },
            { name: "Denied reads", color: COLORS.denied, values: days.map((d) => byDay.get(d)?.denied ?? 0) },
          ],
        }),
        barChart({
          id: "per-hospital",
          width: half,
          title: "Reads per hospital",
          categories: hospitals,
          categoryLabel: "Hospital",
          layout: "rows",
          empty: "No reads through a member hospital in this period.",
          series: [
            { name: "Granted reads", color: COLORS.granted, values: stats.hospitals.map((x) => x.reads) },
            { name: "Denied reads", color: COLORS.denied, values: stats.hospitals.map((x) => x.denied) },
          ],
        }),
        barChart({
          id: "break-glass",
          width: half,
          title: "Break-glass per hospital",
          categories: withBreakGlass.map((x) => x.name ?? (ADDRESS.test(x.hospital) ? shortAddress(x.hospital) : `Hospital ${x.hospital}`)),
          categoryLabel: "Hospital",
          layout: "rows",
          empty: "No break-glass in this period.",
          series: [{ name: "Break-glass openings", color: COLORS.breakGlass, values: withBreakGlass.map((x) => x.break_glass) }],
        }),
      ),
    );
  };

  const verify = async (raw: string, fromRow = false): Promise<void> => {
    const rid = raw.trim();
    verifyInput.value = rid;
    verifyInput.removeAttribute("aria-invalid");
    clear(verifyResult);
    if (!RECORD_ID.test(rid)) {
      verifyInput.setAttribute("aria-invalid", "true");
      verifyResult.append(h("p", { class: "error", role: "alert" }, "A record ID is 0x followed by 64 hexadecimal digits."));
      verifyInput.focus();
      return;
    }
    const id = rid.startsWith("0x") ? rid : `0x${rid}`;
    verifyResult.append(h("p", {}, "Verifying…"));
    if (fromRow) document.getElementById("verify-h")?.focus();
    try {
      const v = await api.get<Verification>(`/audit/records/${id}/verify`);
      clear(verifyResult);
      verifyResult.append(renderVerification(v));
    } catch (err) {
      clear(verifyResult);
      const box = h("div", { role: "alert" });
      verifyResult.append(box);
      if (err instanceof ApiError && err.status === 404) {
        box.className = "error";
        box.textContent = "No record with this ID is indexed on this node.";
      } else report(err, box, "The record could not be verified. ");
    }
  };
  verifyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    void verify(verifyInput.value);
  });

  csvButton.addEventListener("click", async () => {
    exportStatus.className = "";
    exportStatus.textContent = "Preparing the CSV…";
    try {
      const n = await downloadCsv(api, filter);
      exportStatus.textContent = `Saved audit-events.csv with ${n} ${n === 1 ? "event" : "events"}.`;
    } catch (err) {
      exportStatus.textContent = "";
      report(err, exportStatus, "The CSV could not be exported. ");
    }
  });
  fhirButton.addEventListener("click", async () => {
    exportStatus.className = "";
    exportStatus.textContent = "Preparing the FHIR export…";
    try {
      const n = await downloadFhir(api, filter);
      exportStatus.textContent = `Saved audit-events.fhir.json, a FHIR Bundle with ${n} ${n === 1 ? "AuditEvent" : "AuditEvents"}.`;
    } catch (err) {
      exportStatus.textContent = "";
      if (err instanceof ApiError && err.status === 404) {
        exportStatus.className = "error";
        exportStatus.textContent = "The FHIR interface is turned off on this node, so there is no FHIR export.";
      } else report(err, exportStatus, "The FHIR export failed. ");
    }
  });

  const refresh = async (): Promise<void> => {
    await Promise.all([loadTrail(), loadStats()]);
  };

  fill();
  void refresh();
}

type ReadFilter = { filter: Filter } | { problems: { el: HTMLElement; text: string }[] };

function readFilter(
  patient: HTMLInputElement,
  record: HTMLInputElement,
  actor: HTMLInputElement,
  eventType: HTMLSelectElement,
  since: HTMLInputElement,
  until: HTMLInputElement,
): ReadFilter {
  const problems: { el: HTMLElement; text: string }[] = [];
  const p = patient.value.trim();
  const r = record.value.trim();
  const a = actor.value.trim();
  if (p && !ADDRESS.test(p)) problems.push({ el: patient, text: "The patient must be a wallet address: 0x followed by 40 hexadecimal digits." });
  if (r && !RECORD_ID.test(r)) problems.push({ el: record, text: "The record ID must be 0x followed by 64 hexadecimal digits." });
  if (a && !ADDRESS.test(a)) problems.push({ el: actor, text: "The actor must be a wallet or hospital address: 0x followed by 40 hexadecimal digits." });
  const from = parseUtcInput(since.value);
  const to = parseUtcInput(until.value);
  if (Number.isNaN(from)) problems.push({ el: since, text: "The start time is not a valid date and time." });
  if (Number.isNaN(to)) problems.push({ el: until, text: "The end time is not a valid date and time." });
  if (from !== null && to !== null && !Number.isNaN(from) && !Number.isNaN(to) && from > to) problems.push({ el: until, text: "The end time is before the start time." });
  if (problems.length) return { problems };
  return {
    filter: {
      patient: p,
      record_id: r && !r.startsWith("0x") ? `0x${r}` : r,
      actor: a,
      event: eventType.value,
      since: from,
      until: to,
    },
  };
}

function renderVerification(v: Verification): HTMLElement {
  const check = (ok: boolean | null, yes: string, no: string, unknown = "") =>
    h(
      "li",
      { class: ok === false ? "bad" : ok ? "ok" : "muted" },
      h("span", { "aria-hidden": "true" }, ok === false ? "✘ " : ok ? "✔ " : "– "),
      ok === false ? no : ok ? yes : unknown,
    );
  const hash = (value: string | null) => (value ? h("span", { class: "mono" }, value) : h("span", { class: "muted" }, "—"));
  const why = !v.anchored
    ? "This record is not anchored yet: the node has not put its batch on the chain. Try again in a minute."
    : v.stored_content_intact === false
      ? "The stored encrypted copy of this record was altered: it no longer decrypts to the anchored content hash."
      : "The anchor does not prove this record's content hash.";
  return h(
    "div",
    { class: `verdict ${v.verified ? "verdict-ok" : "verdict-bad"}`, id: "verdict", "data-verified": String(v.verified) },
    h("h3", {}, h("span", { "aria-hidden": "true" }, v.verified ? "✔ " : "✘ "), v.verified ? "Verified" : "Not verified"),
    h("p", {}, v.verified ? "The record matches its anchor on the chain, and the stored copy is intact." : why),
    h(
      "ul",
      { class: "checks" },
      check(v.anchored, `Anchored in batch ${v.batch_id}.`, "Not anchored yet."),
      check(v.anchored ? v.root_on_chain : null, "The chain holds this batch's Merkle root.", "The chain does not hold this batch's Merkle root.", "Merkle root: not checked (not anchored)."),
      check(v.anchored ? v.proof_valid_on_chain : null, "The RecordRegistry contract accepts the Merkle proof.", "The RecordRegistry contract rejects the Merkle proof.", "Merkle proof: not checked (not anchored)."),
      check(v.stored_content_intact, "The stored copy is intact: it decrypts to the anchored content hash.", "The stored copy is NOT intact: it does not decrypt to the anchored content hash.", "Stored copy: not checked (the record was erased)."),
    ),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Record ID"),
      h("dd", {}, hash(v.record_id)),
      h("dt", {}, "Content hash (SHA-256)"),
      h("dd", {}, hash(v.content_hash)),
      h("dt", {}, "Batch"),
      h("dd", { id: "v-batch" }, v.batch_id === null ? "—" : String(v.batch_id)),
      h("dt", {}, "Merkle root"),
      h("dd", { id: "v-root" }, hash(v.root)),
      h("dt", {}, "Anchor transaction"),
      h("dd", { id: "v-tx" }, hash(v.tx_hash)),
      h("dt", {}, "Merkle path (sibling hashes, leaf to root)"),
      h(
        "dd",
        {},
        v.proof.length
          ? h("ol", { class: "proof", id: "v-proof" }, ...v.proof.map((p) => h("li", { class: "mono" }, p)))
          : h("span", { class: "muted", id: "v-proof" }, v.anchored ? "Empty: the record was alone in its batch, so its leaf is the root." : "—"),
      ),
    ),
  );
}

// ---------------------------------------------------------------- start

if (api.token) showExplorer();
else showSignIn();
