// What the portal knows while a person is signed in: the session, their records and the
// names behind addresses (this node's clinician directory and the member hospitals).

import { keccak256, toUtf8Bytes } from "ethers";
import { Api, ApiError } from "../lib/api";
import type { DirectoryEntry, InfoOut, RecordOut, TypedDataOut } from "./types";

export const api = new Api("emr-portal-token");
const SESSION_KEY = "emr-portal-session";

export interface Session {
  address: string;
  expires_at: number;
  previous_login: number | null;
}

/** Where the clinician directory is served (HB, spec item 5). */
export const DIRECTORY_PATH = "/clinicians/directory";

class PortalState {
  session: Session | null = null;
  info: InfoOut | null = null;
  members = new Map<string, string>();
  directory: DirectoryEntry[] = [];
  records: RecordOut[] | null = null;
  typed: TypedDataOut | null = null;
  hospitalsById = new Map<string, string>();
  roleNames: string[] = [];
  private categoryHashes = new Map<string, string>();

  restore(): void {
    const raw = sessionStorage.getItem(SESSION_KEY);
    if (!raw || !api.token) return;
    try {
      const s = JSON.parse(raw) as Session;
      if (s.expires_at * 1000 > Date.now()) this.session = s;
    } catch {
      /* a damaged entry: sign in again */
    }
  }

  save(session: Session): void {
    this.session = session;
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  }

  forget(): void {
    this.session = null;
    this.records = null;
    api.token = null;
    sessionStorage.removeItem(SESSION_KEY);
  }

  /** The category name whose keccak256 is `scope`, among the categories this page knows. */
  categoryOf(scope: string | null | undefined): string | null {
    if (!scope) return null;
    return this.categoryHashes.get(scope.toLowerCase()) ?? null;
  }

  categories(): string[] {
    return [...new Set((this.records ?? []).map((r) => r.category))].sort();
  }

  private learnCategories(): void {
    for (const c of this.categories()) this.categoryHashes.set(keccak256(toUtf8Bytes(c)).toLowerCase(), c);
  }

  /** Names and records; a missing optional route (directory) only leaves names out. */
  async load(): Promise<void> {
    const [info, typed, records, directory] = await Promise.all([
      api.get<InfoOut>("/info"),
      api.get<TypedDataOut>("/consents/typed-data"),
      api.get<RecordOut[]>("/records?limit=1000"),
      api.get<DirectoryEntry[]>(DIRECTORY_PATH).catch((err: unknown) => {
        if (err instanceof ApiError && (err.status === 404 || err.status === 403)) return [];
        throw err;
      }),
    ]);
    this.info = info;
    this.members = new Map(info.members.map((m) => [m.address, m.name]));
    if (!this.members.has(info.hospital)) this.members.set(info.hospital, info.hospital_name);
    this.typed = typed;
    this.hospitalsById = new Map(Object.entries(typed.hospitals));
    this.roleNames = typed.roles;
    this.records = records;
    this.directory = directory;
    this.learnCategories();
  }

  async reloadRecords(): Promise<void> {
    this.records = await api.get<RecordOut[]>("/records?limit=1000");
    this.learnCategories();
  }
}

export const state = new PortalState();
