// Plain words for what a patient signs and for what happened to their records. Every
// sentence is built from the very data the wallet signs or the node returned.

import { formatTime, shortAddress } from "../lib/dom";
import type { AuditEvent, RecordOut } from "./types";
import { state } from "./state";

export const ZERO32 = `0x${"00".repeat(32)}`;
export const SCOPE_KINDS = { record: 0, category: 1, all: 2 } as const;
export type ScopeKindName = keyof typeof SCOPE_KINDS;

export function same(a: string | null | undefined, b: string | null | undefined): boolean {
  return !!a && !!b && a.toLowerCase() === b.toLowerCase();
}

/** "Dr Ada Lovelace (physician, Test General)", "Test General (hospital)", "you" or the address. */
export function who(address: string | null | undefined, { full = false } = {}): string {
  if (!address) return "someone";
  if (same(address, state.session?.address)) return "you";
  const c = state.directory.find((d) => same(d.address, address));
  const addr = full ? address : shortAddress(address);
  if (c) {
    const where = c.hospital_name ?? "a member hospital";
    return c.name ? `${c.name} (${c.role}, ${where}; wallet ${addr})` : `a ${c.role} of ${where} (wallet ${addr})`;
  }
  const member = hospitalName(address);
  if (member) return `${member} (a hospital: every clinician it registered; wallet ${addr})`;
  return `the wallet ${addr}`;
}

export function hospitalName(address: string | null | undefined): string | null {
  if (!address) return null;
  for (const [a, name] of state.members) if (same(a, address)) return name;
  return null;
}

export function hospitalLabel(address: string | null | undefined): string {
  return hospitalName(address) ?? (address ? `hospital ${shortAddress(address)}` : "a hospital");
}

export function recordDate(r: RecordOut): number {
  return r.document?.clinical_time ?? r.created_at;
}

export function formatDate(unixSeconds: number): string {
  return new Date(unixSeconds * 1000).toLocaleDateString(undefined, { dateStyle: "medium" });
}

/** "your lab record of 3 Dec 2026 from Test General". */
export function recordLabel(recordId: string | null | undefined): string {
  if (!recordId || same(recordId, ZERO32)) return "all your records";
  const r = state.records?.find((x) => same(x.record_id, recordId));
  if (!r) return `your record ${shortAddress(recordId)}`;
  const title = r.document?.title ? `“${r.document.title}”, ` : "";
  return `your ${r.category} record (${title}${formatDate(recordDate(r))}, from ${hospitalLabel(r.creator)})`;
}

export function scopeWords(kind: number | string, scope: string | null, category?: string | null): string {
  const k = typeof kind === "string" ? SCOPE_KINDS[kind as ScopeKindName] : kind;
  if (k === SCOPE_KINDS.all) return "all your records, including future ones";
  if (k === SCOPE_KINDS.category) {
    const name = category ?? state.categoryOf(scope);
    return name ? `all your records in the category “${name}”, including future ones` : `all your records in one category (${shortAddress(scope ?? "")})`;
  }
  return recordLabel(scope);
}

export interface GrantMessage {
  patient: string;
  grantee: string;
  scopeKind: number;
  scope: string;
  expiresAt: number;
  nonce: number;
  deadline: number;
}

export function grantWords(m: GrantMessage): string {
  return `You allow ${who(m.grantee, { full: true })} to read ${scopeWords(m.scopeKind, m.scope)} until ${formatTime(m.expiresAt)}.`;
}

export function grantFinePrint(m: GrantMessage): string {
  return (
    `Your wallet ${m.patient} signs this permission and the node records it on the blockchain; ` +
    `it starts once it is recorded and ends by itself at that time. You can withdraw it at any time under “Who can see my records”. ` +
    `If the node has not sent it by ${formatTime(m.deadline)}, the signature can no longer be used.`
  );
}

export function revokeWords(grantee: string, scopeKind: number, scope: string, category?: string | null): string {
  return `You withdraw the permission of ${who(grantee)} to read ${scopeWords(scopeKind, scope, category)}. From the next block on they can no longer read it.`;
}

export function rolesWords(roles: string[] | null | undefined): string {
  if (!roles || roles.length === 0) return "clinicians";
  const plural = roles.map((r) => (r.endsWith("s") ? r : `${r}s`));
  return plural.length === 1 ? plural[0] : `${plural.slice(0, -1).join(", ")} and ${plural[plural.length - 1]}`;
}

const BASIS: Record<number, string> = {
  0: "no permission",
  1: "your permission for this record",
  2: "your permission for this category",
  3: "your permission for all your records",
  4: "emergency (break-glass) access",
  5: "it is your own record",
};

export type EventKind = "read" | "denied" | "break_glass" | "anonymous" | "consent" | "record" | "other";

export function eventKind(e: AuditEvent): EventKind {
  switch (e.event) {
    case "AccessRecorded":
      return e.args.granted ? "read" : "denied";
    case "BreakGlassOpened":
      return "break_glass";
    case "ZkAccessGranted":
      return "anonymous";
    case "ConsentGranted":
    case "ConsentRevoked":
    case "ClassConsentGranted":
    case "ClassConsentRevoked":
      return "consent";
    case "RecordAnchored":
    case "RecordErased":
      return "record";
    default:
      return "other";
  }
}

export const KIND_LABEL: Record<EventKind, string> = {
  read: "Read",
  denied: "Refused",
  break_glass: "Emergency access",
  anonymous: "Anonymous read",
  consent: "Permission",
  record: "Record",
  other: "Other",
};

function str(v: unknown): string {
  return typeof v === "string" ? v : String(v ?? "");
}

function classReaders(hospital: unknown, roles: unknown): string {
  const h = Number(hospital);
  const where = h === 0 ? "any member hospital" : (state.hospitalsById.get(String(h)) ?? `member hospital ${h}`);
  const mask = Number(roles);
  const names = state.roleNames.filter((_, i) => (mask >> i) & 1);
  return `${rolesWords(names)} of ${where}`;
}

/** One sentence for one audit event, from the patient's point of view. */
export function eventWords(e: AuditEvent): string {
  const a = e.args;
  switch (e.event) {
    case "AccessRecorded": {
      const reader = who(str(a.actor));
      const where = hospitalLabel(str(a.hospital));
      if (same(str(a.actor), state.session?.address)) {
        return a.granted ? `You opened ${recordLabel(str(a.recordId))}.` : `You tried to open ${recordLabel(str(a.recordId))} and were refused.`;
      }
      if (a.granted) {
        return `${capital(reader)} read ${recordLabel(str(a.recordId))} through ${where}, allowed by ${BASIS[Number(a.basis)] ?? "a permission"}.`;
      }
      return `${capital(reader)} tried to read ${recordLabel(str(a.recordId))} through ${where} and was refused.`;
    }
    case "BreakGlassOpened": {
      const target = same(str(a.recordId), ZERO32) ? "all your records" : recordLabel(str(a.recordId));
      let s = `${hospitalLabel(str(a.hospital))} opened emergency access to ${target} for ${who(str(a.clinician))} until ${formatTime(Number(a.expiresAt))}.`;
      s += e.reason ? ` Reason given: “${e.reason}”.` : " The reason is recorded on the blockchain, but this node holds no text for it.";
      if (e.disclosure?.approved_by) s += ` Approved by ${who(e.disclosure.approved_by)}.`;
      return s;
    }
    case "ZkAccessGranted":
      return `An anonymous clinician read ${recordLabel(str(a.recordId))}: they proved they were allowed without revealing who they are (sent by ${hospitalLabel(str(a.relayer))}).`;
    case "ConsentGranted":
      return `You allowed ${who(str(a.grantee))} to read ${scopeWords(Number(a.scopeKind), str(a.scope))} until ${formatTime(Number(a.expiresAt))}.`;
    case "ConsentRevoked":
      return `You withdrew the permission of ${who(str(a.grantee))} to read ${scopeWords(Number(a.scopeKind), str(a.scope))}.`;
    case "ClassConsentGranted":
      return `You allowed ${classReaders(a.hospital, a.roles)} to read ${scopeWords(Number(a.scopeKind), str(a.scope))} anonymously until ${formatTime(Number(a.expiresAt))}.`;
    case "ClassConsentRevoked":
      return `You withdrew the anonymous access of ${classReaders(a.hospital, a.roles)} to ${scopeWords(Number(a.scopeKind), str(a.scope))}.`;
    case "RecordAnchored":
      return `${capital(recordLabel(str(a.recordId)))} was sealed on the blockchain by ${hospitalLabel(str(a.hospital))}.`;
    case "RecordErased":
      return `${capital(recordLabel(str(a.recordId)))} was erased by ${hospitalLabel(str(a.hospital))}; only its fingerprint remains.`;
    default:
      return `${e.event} (recorded on the blockchain).`;
  }
}

export function capital(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

export function duration(seconds: number): string {
  if (seconds % 86400 === 0) return `${seconds / 86400} day${seconds === 86400 ? "" : "s"}`;
  if (seconds % 3600 === 0) return `${seconds / 3600} hour${seconds === 3600 ? "" : "s"}`;
  if (seconds % 60 === 0) return `${seconds / 60} minute${seconds === 60 ? "" : "s"}`;
  return `${seconds} seconds`;
}
