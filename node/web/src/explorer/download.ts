// Exports: the current filter as the node's CSV, and as FHIR AuditEvent JSON. Files are
// fetched with the token, then saved through a Blob and an <a download> (no inline script).

import { Api, ApiError, query } from "../lib/api";
import { type Filter, fhirParams, filterParams } from "./model";

export function saveBlob(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 30_000);
}

function filenameFrom(response: Response, fallback: string): string {
  const disposition = response.headers.get("Content-Disposition") ?? "";
  const m = /filename="?([A-Za-z0-9._-]+)"?/.exec(disposition);
  return m ? m[1] : fallback;
}

/** The node's CSV of every event matching the filter (no paging); returns the row count. */
export async function downloadCsv(api: Api, filter: Filter): Promise<number> {
  const response = await api.request("GET", `/audit/events/csv${query(filterParams(filter))}`, undefined, "text/csv");
  const blob = await response.blob();
  saveBlob(new Blob([blob], { type: "text/csv;charset=utf-8" }), filenameFrom(response, "audit-events.csv"));
  const text = await blob.text();
  return Math.max(0, text.split(/\r?\n/).filter((line) => line !== "").length - 1);
}

interface FhirBundle {
  resourceType: string;
  total?: number;
  entry?: { fullUrl?: string; resource: FhirAuditEvent; search?: unknown }[];
  link?: { relation: string; url: string }[];
}

interface FhirAuditEvent {
  resourceType: string;
  entity?: { type?: { code?: string }; detail?: { type: string; valueString?: string }[] }[];
}

/** The chain event an AuditEvent was mapped from (its chain-transaction entity). */
export function chainEventOf(resource: FhirAuditEvent): string | undefined {
  for (const entity of resource.entity ?? []) {
    if (entity.type?.code !== "chain-transaction") continue;
    return entity.detail?.find((d) => d.type === "event")?.valueString;
  }
  return undefined;
}

/** Every FHIR AuditEvent matching the filter, all pages, as one searchset Bundle (oldest
 * first). Returns the number of AuditEvents saved. */
export async function downloadFhir(api: Api, filter: Filter): Promise<number> {
  const entries: NonNullable<FhirBundle["entry"]> = [];
  let next: string | null = `/fhir/AuditEvent?${fhirParams(filter).toString()}`;
  for (let pages = 0; next !== null; pages++) {
    if (pages >= 200) throw new ApiError(422, "too_many", "The trail is too large to export as FHIR in one file. Please narrow the filter.");
    const response = await api.request("GET", next, undefined, "application/fhir+json");
    const bundle = (await response.json()) as FhirBundle;
    if (bundle.resourceType !== "Bundle") throw new ApiError(502, "not_bundle", "The node did not answer with a FHIR Bundle.");
    entries.push(...(bundle.entry ?? []));
    const link = bundle.link?.find((l) => l.relation === "next")?.url ?? null;
    // The node's own next link, asked of this origin (a proxy may name another host).
    next = link === null ? null : pathOf(link);
  }
  const chosen = filter.event ? entries.filter((e) => chainEventOf(e.resource) === filter.event) : entries;
  const bundle = { resourceType: "Bundle", type: "searchset", total: chosen.length, entry: chosen };
  saveBlob(new Blob([JSON.stringify(bundle, null, 2)], { type: "application/fhir+json" }), "audit-events.fhir.json");
  return chosen.length;
}

function pathOf(url: string): string {
  const parsed = new URL(url, location.href);
  return `${parsed.pathname}${parsed.search}`;
}
