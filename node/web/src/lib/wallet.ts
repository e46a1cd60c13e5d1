// The browser wallet (EIP-1193: window.ethereum) as the portal uses it: ask for the account,
// sign a sign-in message (EIP-191 personal_sign) and sign typed data (EIP-712,
// eth_signTypedData_v4). Wallet failures become sentences a person understands.

import { hexlify, toUtf8Bytes } from "ethers";

interface Eip1193Provider {
  request(args: { method: string; params?: unknown[] }): Promise<unknown>;
  on?(event: string, listener: (...args: unknown[]) => void): void;
}

declare global {
  interface Window {
    ethereum?: Eip1193Provider;
  }
}

export const DECLINED = "You declined the signature in your wallet; nothing was changed.";
export const NO_WALLET =
  "No wallet was found in this browser. Install or unlock a wallet extension (for example MetaMask), then reload this page.";

/** A wallet failure, already in plain words. `declined` when the person said no. */
export class WalletError extends Error {
  constructor(
    message: string,
    readonly declined = false,
  ) {
    super(message);
  }
}

function plain(err: unknown): WalletError {
  const code = typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
  switch (code) {
    case 4001:
    case "ACTION_REJECTED":
      return new WalletError(DECLINED, true);
    case 4100:
      return new WalletError("Your wallet has not allowed this page to use your account. Unlock it and allow this site, then try again.");
    case 4200:
      return new WalletError("Your wallet cannot do this kind of signature. Try another wallet.");
    case 4900:
    case 4901:
      return new WalletError("Your wallet is not connected. Unlock it and try again.");
    case -32002:
      return new WalletError("Your wallet is already showing a request. Open your wallet and answer it first.");
    default:
      return new WalletError("Your wallet could not complete the request; nothing was changed. Please try again.");
  }
}

function provider(): Eip1193Provider {
  if (!window.ethereum) throw new WalletError(NO_WALLET);
  return window.ethereum;
}

async function call<T>(method: string, params: unknown[] = []): Promise<T> {
  const p = provider();
  try {
    return (await p.request({ method, params })) as T;
  } catch (err) {
    throw plain(err);
  }
}

export function hasWallet(): boolean {
  return window.ethereum !== undefined;
}

/** The account the wallet reports (for a contract wallet: the contract's address). */
export async function connect(): Promise<string> {
  const accounts = await call<string[]>("eth_requestAccounts");
  if (!Array.isArray(accounts) || accounts.length === 0) {
    throw new WalletError("Your wallet did not share an account with this page. Unlock it and try again.");
  }
  return accounts[0];
}

/** EIP-191 signature of a text message (the SIWE sign-in message). */
export function personalSign(message: string, address: string): Promise<string> {
  return call<string>("personal_sign", [hexlify(toUtf8Bytes(message)), address]);
}

export interface TypedData {
  types: Record<string, { name: string; type: string }[]>;
  primaryType: string;
  domain: Record<string, unknown>;
  message: Record<string, unknown>;
}

/** EIP-712 signature (eth_signTypedData_v4) of exactly `typed`. */
export function signTypedData(address: string, typed: TypedData): Promise<string> {
  return call<string>("eth_signTypedData_v4", [address, JSON.stringify(typed)]);
}

/** Calls `listener` when the person switches account or disconnects in the wallet. */
export function onAccountsChanged(listener: (accounts: string[]) => void): void {
  window.ethereum?.on?.("accountsChanged", (accounts) => listener(accounts as string[]));
}
