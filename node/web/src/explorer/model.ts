// What the explorer shows: the API's shapes, the auditor's filter, and plain names for events.

import type { AuditEvent } from "../lib/api";
import { shortAddress } from "../lib/dom";

export type { AuditEvent };

export interface Verification {
  record_id: string;
  verified: boolean;
  anchored: boolean;
  content_hash: string;
  batch_id: number | null;
  root: string | null;
  root_on_chain: boolean;
  proof_valid_on_chain: boolean;
  stored_content_intact: boolean | null;
  tx_hash: string | null;
  proof: string[];
}

export interface DayStats {
  day: string;
  reads: number;
  denied: number;
  break_glass: number;
}

export interface HospitalStats {
  hospital: string;
  name: string | null;
  reads: number;
  denied: number;
  break_glass: number;
}

export interface Stats {
  days: DayStats[];
  hospitals: HospitalStats[];
  anonymous_reads: number;
}

/** The auditor's filter, as the API takes it (times in unix seconds, both inclusive). */
export interface Filter {
  patient: string;
  record_id: string;
  actor: string;
  event: string;
  since: number | null;
  until: number | null;
}

export const EMPTY_FILTER: Filter = { patient: "", record_id: "", actor: "", event: "", since: null, until: null };

/** The contract events the trail holds, with a plain name each. */
export const EVENT_NAMES: Record<string, string> = {
  AccessRecorded: "Read of a record (granted or denied)",
  BreakGlassOpened: "Break-glass (emergency access) opened",
  ConsentGranted: "Consent granted",
  ConsentRevoked: "Consent revoked",
  ClassConsentGranted: "Consent to a class of readers granted",
  ClassConsentRevoked: "Consent to a class of readers revoked",
  RecordAnchored: "Record anchored on the chain",
  BatchAnchored: "Batch of records anchored",
  ZkAccessGranted: "Anonymous (zero-knowledge) read",
};

const BASIS: Record<number, string> = {
  0: "no consent",
  1: "consent for this record",
  2: "consent for the category",
  3: "consent for all records",
  4: "break-glass",
  5: "the patient's own record",
};

const SCOPE_KIND: Record<number, string> = { 0: "one record", 1: "a category", 2: "every record" };

export const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
export const RECORD_ID = /^(0x)?[0-9a-fA-F]{64}$/;

function str(v: unknown): string | null {
  return typeof v === "string" ? v : null;
}

/** A short label for the event: "Read granted", "Read denied", or the plain event name. */
export function eventLabel(e: AuditEvent): string {
  if (e.event === "AccessRecorded") return e.args.granted === true ? "Read granted" : "Read denied";
  const plain = EVENT_NAMES[e.event];
  return plain ? plain.replace(/ \(.*\)$/, "") : e.event;
}

export function eventPatient(e: AuditEvent): string | null {
  return str(e.args.patient);
}

export function eventRecord(e: AuditEvent): string | null {
  const rid = str(e.args.recordId);
  if (rid && !/^0x0+$/.test(rid)) return rid;
  // A consent for one record names it as its scope (scopeKind 0).
  if ((e.event === "ConsentGranted" || e.event === "ConsentRevoked") && e.args.scopeKind === 0) return str(e.args.scope);
  return null;
}

/** Who acted: the reader, grantee, break-glass clinician, or anchoring hospital. */
export function eventActor(e: AuditEvent): string | null {
  return str(e.args.actor) ?? str(e.args.grantee) ?? str(e.args.clinician) ?? str(e.args.hospital) ?? str(e.args.relayer);
}

function when(unix: unknown): string | null {
  return typeof unix === "number" && unix > 0 ? formatUtc(unix) : null;
}

/** One line of detail in plain words. */
export function eventDetail(e: AuditEvent): string {
  const a = e.args;
  switch (e.event) {
    case "AccessRecorded": {
      const basis = typeof a.basis === "number" ? BASIS[a.basis] ?? `basis ${a.basis}` : "";
      return a.granted === true ? `Allowed by ${basis}.` : "Refused: no consent covered this read.";
    }
    case "BreakGlassOpened": {
      const until = when(a.expiresAt);
      const reason = e.reason ? `Reason: “${e.reason}”.` : "Reason not stored on this node.";
      return `${reason}${until ? ` Open until ${until} UTC.` : ""}${str(a.hospital) ? ` Hospital ${shortAddress(str(a.hospital)!)}.` : ""}`;
    }
    case "ConsentGranted":
    case "ClassConsentGranted": {
      const scope = typeof a.scopeKind === "number" ? SCOPE_KIND[a.scopeKind] ?? "a scope" : "a scope";
      const until = when(a.expiresAt);
      const who = e.event === "ClassConsentGranted" ? ` to hospital #${String(a.hospital)}'s readers` : "";
      return `Covers ${scope}${who}${until ? `, until ${until} UTC` : ""}.`;
    }
    case "ConsentRevoked":
    case "ClassConsentRevoked": {
      const scope = typeof a.scopeKind === "number" ? SCOPE_KIND[a.scopeKind] ?? "a scope" : "a scope";
      return `Ended a consent for ${scope}.`;
    }
    case "RecordAnchored":
    case "BatchAnchored":
      return typeof a.batchId === "number" ? `Batch ${a.batchId}${typeof a.count === "number" ? `, ${a.count} ${a.count === 1 ? "record" : "records"}` : ""}.` : "";
    default:
      return "";
  }
}

/** A record id in short: its hospital namespace (the first 4 bytes) and its last digits. */
export function shortRecord(id: string): string {
  return id.length > 20 ? `${id.slice(0, 10)}…${id.slice(-6)}` : id;
}

/** "2026-12-07 10:05:03" in UTC. */
export function formatUtc(unix: number): string {
  return new Date(unix * 1000).toISOString().slice(0, 19).replace("T", " ");
}

/** A datetime-local value ("2026-12-07T10:05" or with seconds) read as UTC; null if empty. */
export function parseUtcInput(value: string): number | null {
  if (!value) return null;
  const ms = Date.parse(`${value.length === 16 ? `${value}:00` : value}Z`);
  return Number.isFinite(ms) ? Math.floor(ms / 1000) : NaN;
}

/** Unix seconds as a datetime-local value in UTC. */
export function toUtcInput(unix: number): string {
  return new Date(unix * 1000).toISOString().slice(0, 19);
}

/** The filter as /audit/events query parameters. */
export function filterParams(f: Filter): Record<string, string | number | null> {
  return { patient: f.patient, record_id: f.record_id, actor: f.actor, event: f.event, since: f.since, until: f.until };
}

/** The filter as FHIR AuditEvent search parameters (all but the event type, which the page
 * applies to the AuditEvents it receives: each names its chain event). */
export function fhirParams(f: Filter): URLSearchParams {
  const q = new URLSearchParams();
  if (f.patient) q.set("patient", `Patient/${f.patient}`);
  if (f.record_id) q.set("entity", `DocumentReference/${f.record_id}`);
  if (f.actor) q.set("agent", f.actor);
  const iso = (t: number) => new Date(t * 1000).toISOString().slice(0, 19) + "Z";
  if (f.since !== null) q.append("date", `ge${iso(f.since)}`);
  if (f.until !== null) q.append("date", `le${iso(f.until)}`);
  q.set("_sort", "date");
  q.set("_count", "1000");
  return q;
}
