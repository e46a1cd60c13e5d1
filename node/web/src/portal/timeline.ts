// Every access to my records on a timeline: reads allowed and refused, emergency
// (break-glass) access with its reason, anonymous reads counted; filterable by kind,
// record and date.

import { query } from "../lib/api";
import { clear, formatTime, h } from "../lib/dom";
import { api, state } from "./state";
import type { AuditEvent } from "./types";
import { heading, messages, showError } from "./ui";
import { eventKind, eventWords, formatDate, KIND_LABEL, recordDate, type EventKind } from "./words";

const PAGE = 1000;
const SHOWN = 50;

/** Every event of my trail matching the node-side filters, following X-Total-Count. */
export async function fetchEvents(filters: Record<string, string | number | undefined>): Promise<AuditEvent[]> {
  const out: AuditEvent[] = [];
  for (let offset = 0; ; offset += PAGE) {
    const response = await api.request("GET", `/audit/events${query({ ...filters, limit: PAGE, offset })}`);
    const page = (await response.json()) as AuditEvent[];
    out.push(...page);
    const total = Number(response.headers.get("X-Total-Count") ?? NaN);
    if (page.length < PAGE || !Number.isFinite(total) || out.length >= total || offset > 100_000) break;
  }
  return out;
}

/** Break-glass openings on my records since `since` (all of them when null). */
export async function breakGlassSince(since: number | null): Promise<AuditEvent[]> {
  const events = await fetchEvents({ event: "BreakGlassOpened", since: since ?? undefined });
  return events.filter((e) => e.event === "BreakGlassOpened" && (since === null || e.timestamp >= since));
}

const KINDS: [EventKind | "", string][] = [
  ["", "Everything"],
  ["read", "Reads allowed"],
  ["denied", "Reads refused"],
  ["break_glass", "Emergency access"],
  ["anonymous", "Anonymous reads"],
  ["consent", "Permissions given or withdrawn"],
  ["record", "Records sealed or erased"],
];

function dayStart(value: string): number | undefined {
  if (!value) return undefined;
  const t = new Date(`${value}T00:00:00`).getTime();
  return Number.isNaN(t) ? undefined : Math.floor(t / 1000);
}

function dayEnd(value: string): number | undefined {
  const start = dayStart(value);
  return start === undefined ? undefined : start + 86399;
}

export async function timelineView(box: HTMLElement): Promise<void> {
  const msg = messages();
  const kind = h("select", { id: "filter-kind" }, ...KINDS.map(([v, label]) => h("option", { value: v }, label)));
  const records = [...(state.records ?? [])].sort((a, b) => recordDate(b) - recordDate(a));
  const record = h(
    "select",
    { id: "filter-record" },
    h("option", { value: "" }, "All records"),
    ...records.map((r) => h("option", { value: r.record_id }, `${r.category} · ${formatDate(recordDate(r))}`)),
  );
  const from = h("input", { type: "date", id: "filter-from" });
  const to = h("input", { type: "date", id: "filter-to" });
  const apply = h("button", { type: "submit", id: "filter-apply" }, "Show");
  const form = h(
    "form",
    { class: "filters", id: "timeline-filters", "aria-label": "Filter the access history" },
    h("div", {}, h("label", { for: "filter-kind" }, "What"), kind),
    h("div", {}, h("label", { for: "filter-record" }, "Record"), record),
    h("div", {}, h("label", { for: "filter-from" }, "From"), from),
    h("div", {}, h("label", { for: "filter-to" }, "To"), to),
    h("div", { class: "filter-button" }, apply),
  );
  const summary = h("p", { id: "timeline-summary", "aria-live": "polite" });
  const list = h("ol", { id: "timeline", class: "timeline", "aria-labelledby": "history-h" });
  const more = h("button", { type: "button", class: "secondary", id: "timeline-more" }, "Show older events");
  more.hidden = true;
  box.append(
    heading(2, "Access history", "history-h"),
    h("p", {}, "Every time someone opened or tried to open your records, every emergency access with the reason the hospital gave, and every permission you gave or withdrew, newest first. This history comes from the blockchain: nobody can remove an entry."),
    form,
    msg,
    summary,
    list,
    more,
  );

  let events: AuditEvent[] = [];
  let shown = 0;
  const draw = (): void => {
    const wanted = kind.value as EventKind | "";
    const matching = events.filter((e) => !wanted || eventKind(e) === wanted).reverse();
    const count = (k: EventKind): number => events.filter((e) => eventKind(e) === k).length;
    const n = (x: number, one: string, many: string): string => `${x} ${x === 1 ? one : many}`;
    summary.textContent =
      `${n(count("read"), "read allowed", "reads allowed")}, ${n(count("denied"), "read refused", "reads refused")}, ` +
      `${n(count("break_glass"), "emergency access", "emergency accesses")}, ${n(count("anonymous"), "anonymous read", "anonymous reads")}` +
      ` in the chosen period. Showing ${Math.min(shown, matching.length)} of ${n(matching.length, "event", "events")}.`;
    clear(list);
    for (const e of matching.slice(0, shown)) {
      const k = eventKind(e);
      list.append(
        h(
          "li",
          { class: `event kind-${k}`, "data-kind": k, "data-event": e.event },
          h("p", { class: "event-head" }, h("span", { class: `badge badge-${k}` }, KIND_LABEL[k]), " ", h("time", { datetime: new Date(e.timestamp * 1000).toISOString() }, formatTime(e.timestamp))),
          h("p", { class: "event-words" }, eventWords(e)),
          h("p", { class: "muted small mono" }, `Block ${e.block_number}, transaction ${e.tx_hash}`),
        ),
      );
    }
    if (matching.length === 0) list.append(h("li", { class: "empty" }, "Nothing in the chosen period."));
    more.hidden = shown >= matching.length;
  };
  const load = async (): Promise<void> => {
    const since = dayStart(from.value);
    const until = dayEnd(to.value);
    if (since !== undefined && until !== undefined && since > until) {
      clear(msg);
      msg.append(h("p", { class: "error", role: "alert" }, "The “From” day is after the “To” day. Please choose the days again."));
      return;
    }
    summary.textContent = "Loading…";
    events = await fetchEvents({ record_id: record.value || undefined, since, until });
    clear(msg);
    shown = SHOWN;
    draw();
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load().catch((err: unknown) => showError(msg, err));
  });
  kind.addEventListener("change", () => {
    shown = SHOWN;
    draw();
  });
  more.addEventListener("click", () => {
    shown += SHOWN;
    draw();
  });
  await load();
}
