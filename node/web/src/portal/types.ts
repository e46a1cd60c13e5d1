// Shapes of the node's answers, as the portal reads them (see the OpenAPI document).

// The audit event shapes are shared with the explorer.
export type { AuditEvent, Disclosure } from "../lib/api";

export interface SessionOut {
  token: string;
  address: string;
  expires_at: number;
  previous_login?: number | null;
}

export interface RecordOut {
  record_id: string;
  patient: string;
  category: string;
  content_type: string;
  size: number;
  content_hash: string;
  creator: string;
  created_at: number;
  previous_id: string | null;
  erased: boolean;
  erased_at: number | null;
  document: { title: string | null; clinical_time: number | null; type_display: string | null } | null;
}

export interface ReceiptOut {
  record_id: string;
  status: "anchored" | "pending";
  batch_id: number | null;
  root: string | null;
  tx_hash: string | null;
  block_number: number | null;
  anchored_at: number | null;
  leaf: string | null;
  proof: string[];
}

export interface ActiveConsent {
  kind: "grant" | "class" | "break_glass";
  grantee: string | null;
  grantee_name: string | null;
  hospital: number | null;
  roles: string[] | null;
  scope_kind: "record" | "category" | "all";
  scope: string | null;
  record_id: string | null;
  category: string | null;
  granted_at: number;
  expires_at: number;
  tx_hash: string;
}

export interface DirectoryEntry {
  address: string;
  name: string | null;
  role: string;
  hospital: number | null;
  hospital_name: string | null;
}

export interface TypedDataOut {
  domain: Record<string, unknown>;
  types: Record<string, { name: string; type: string }[]>;
  scope_kinds: Record<string, number>;
  roles: string[];
  hospitals: Record<string, string>;
}

export interface RelayOut {
  status: string;
  tx_hash: string | null;
  block_number: number | null;
  relay_id: number | null;
  error: string | null;
}

export interface InfoOut {
  hospital: string;
  hospital_name: string;
  chain_id: number;
  members: { address: string; name: string }[];
}

export interface PendingRecovery {
  new_owner: string;
  approvals: string[];
  eta: number | null;
  ready: boolean;
}

export interface WalletOut {
  address: string;
  owner: string;
  guardians: string[];
  threshold: number;
  delay: number;
  nonce: number;
  pending: PendingRecovery | null;
}

export interface WalletTypedDataOut {
  domain: Record<string, unknown>;
  types: Record<string, { name: string; type: string }[]>;
  primary_types?: string[];
  nonce?: number;
}
