// Signed consents: build the EIP-712 Grant or Revoke from the node's published domain and
// types and the patient's next nonce, have the wallet sign it, relay it through the node and
// wait for the chain (a queued relay is polled at /consents/relays/{id}).

import { signTypedData, type TypedData } from "../lib/wallet";
import { state, api } from "./state";
import type { RelayOut } from "./types";
import { PlainError } from "./ui";
import type { GrantMessage } from "./words";

const DEADLINE_SECONDS = 3600;

export interface RevokeMessage {
  patient: string;
  grantee: string;
  scopeKind: number;
  scope: string;
  nonce: number;
  deadline: number;
}

export interface RevokeClassMessage {
  patient: string;
  hospital: number;
  roles: number;
  scopeKind: number;
  scope: string;
  nonce: number;
  deadline: number;
}

async function nonce(patient: string): Promise<number> {
  return (await api.get<{ nonce: number }>(`/consents/nonce/${patient}`)).nonce;
}

function typedData(primaryType: string, message: object): TypedData {
  const t = state.typed!;
  return {
    types: { EIP712Domain: t.types.EIP712Domain, [primaryType]: t.types[primaryType] },
    primaryType,
    domain: t.domain,
    message: { ...message },
  };
}

export async function grantMessage(grantee: string, scopeKind: number, scope: string, expiresAt: number): Promise<GrantMessage> {
  const patient = state.session!.address;
  const now = Math.floor(Date.now() / 1000);
  return { patient, grantee, scopeKind, scope, expiresAt, nonce: await nonce(patient), deadline: now + DEADLINE_SECONDS };
}

export async function revokeMessage(grantee: string, scopeKind: number, scope: string): Promise<RevokeMessage> {
  const patient = state.session!.address;
  const now = Math.floor(Date.now() / 1000);
  return { patient, grantee, scopeKind, scope, nonce: await nonce(patient), deadline: now + DEADLINE_SECONDS };
}

export async function revokeClassMessage(hospital: number, roles: number, scopeKind: number, scope: string): Promise<RevokeClassMessage> {
  const patient = state.session!.address;
  const now = Math.floor(Date.now() / 1000);
  return { patient, hospital, roles, scopeKind, scope, nonce: await nonce(patient), deadline: now + DEADLINE_SECONDS };
}

const ROUTES: Record<string, string> = {
  Grant: "/consents/grant",
  Revoke: "/consents/revoke",
  RevokeClass: "/consents/class-revokes",
};

/** Wallet signs `message` as `primaryType`; the node relays it. Resolves once on chain. */
export async function signAndRelay(
  primaryType: "Grant" | "Revoke" | "RevokeClass",
  message: object,
  progress: (text: string) => void,
): Promise<RelayOut> {
  const typed = typedData(primaryType, message);
  progress("Waiting for your wallet: please check the request there and sign it.");
  const signature = await signTypedData(state.session!.address, typed);
  progress("Signed. The node is recording it on the blockchain…");
  let out = await api.post<RelayOut>(ROUTES[primaryType], { message, signature, domain: typed.domain });
  for (let i = 0; out.status === "queued" && out.relay_id !== null && i < 150; i++) {
    progress("The blockchain is not reachable right now. Your signed request is queued and will be sent as soon as it is back; you can leave this page.");
    await new Promise((r) => setTimeout(r, 2000));
    out = await api.get<RelayOut>(`/consents/relays/${out.relay_id}`);
  }
  if (out.status === "failed") throw new RelayFailed(out.error);
  return out;
}

export class RelayFailed extends PlainError {
  constructor(reason: string | null) {
    super(`The blockchain refused this request; nothing was changed.${reason ? ` (${reason})` : ""}`);
  }
}
