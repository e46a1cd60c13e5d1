// The node's REST API as the pages use it: same origin, bearer session in sessionStorage,
// and errors turned into sentences a person understands.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const PLAIN: Record<number, string> = {
  401: "Your session has expired or is not valid. Please sign in again.",
  403: "You are not allowed to do this.",
  404: "Not found.",
  409: "This conflicts with something that already exists.",
  413: "This is too large for the node to accept.",
  429: "Too many requests. Please wait a moment and try again.",
  502: "The node could not reach a service it depends on. Please try again later.",
  503: "The blockchain or a storage service is not reachable right now. Please try again later.",
  504: "The node took too long to answer. Please try again later.",
};

export function plainMessage(status: number, detail: string | undefined): string {
  if (status >= 500) return PLAIN[status] ?? "The node had a problem. Please try again later.";
  const base = PLAIN[status];
  if (status === 401 || status === 429) return base ?? "Please try again.";
  return detail ? `${base ?? "The request was refused."} (${detail})` : base ?? "The request was refused.";
}

export class Api {
  constructor(private readonly storageKey: string) {}

  get token(): string | null {
    return sessionStorage.getItem(this.storageKey);
  }

  set token(value: string | null) {
    if (value === null) sessionStorage.removeItem(this.storageKey);
    else sessionStorage.setItem(this.storageKey, value);
  }

  async request(method: string, path: string, body?: unknown, accept = "application/json"): Promise<Response> {
    const headers: Record<string, string> = { Accept: accept };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response: Response;
    try {
      response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch {
      throw new ApiError(0, "network", "The node cannot be reached. Check your connection and try again.");
    }
    if (!response.ok) {
      let code = "error";
      let detail: string | undefined;
      try {
        const err = await response.json();
        code = String(err.code ?? err.error ?? code);
        detail = typeof err.detail === "string" ? err.detail : typeof err.message === "string" ? err.message : undefined;
      } catch {
        /* not JSON: keep the status's sentence */
      }
      if (response.status === 401) this.token = null;
      throw new ApiError(response.status, code, plainMessage(response.status, detail));
    }
    return response;
  }

  async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await this.request(method, path, body);
    return (await response.json()) as T;
  }

  get<T>(path: string): Promise<T> {
    return this.json<T>("GET", path);
  }

  post<T>(path: string, body: unknown): Promise<T> {
    return this.json<T>("POST", path, body);
  }
}

export function query(params: Record<string, string | number | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** A break-glass reason this node stored, disclosed with an event (GET /audit/events). */
export interface Disclosure {
  reason: string;
  approved_by: string | null;
  opened_by: string;
  verified: boolean;
}

/** One on-chain audit event as GET /audit/events lists it (chain order, oldest first). */
export interface AuditEvent {
  event: string;
  contract: string;
  block_number: number;
  timestamp: number;
  tx_hash: string;
  log_index: number;
  args: Record<string, unknown>;
  reason: string | null;
  disclosure: Disclosure | null;
}
