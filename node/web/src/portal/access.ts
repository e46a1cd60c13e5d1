// Who may see what: every consent and break-glass window on my records that is live now,
// with its expiry; a consent is withdrawn with one click (the wallet signs a Revoke).

import { formatTime, h } from "../lib/dom";
import { revokeClassMessage, revokeMessage, signAndRelay } from "./consent";
import { api, state } from "./state";
import type { ActiveConsent } from "./types";
import { busy, heading, messages, showBusy, showOk } from "./ui";
import { capital, revokeWords, rolesWords, SCOPE_KINDS, scopeWords, who, ZERO32 } from "./words";

function scopeOf(c: ActiveConsent): string {
  if (c.scope_kind === "all") return ZERO32;
  return c.scope ?? c.record_id ?? ZERO32;
}

function readerWords(c: ActiveConsent): string {
  if (c.kind === "class") {
    const where = c.hospital ? (state.hospitalsById.get(String(c.hospital)) ?? `member hospital ${c.hospital}`) : "any member hospital";
    return `Anonymous ${rolesWords(c.roles)} of ${where} (they prove their role without revealing who they are)`;
  }
  const name = c.grantee_name && c.grantee ? `${c.grantee_name} (wallet ${c.grantee})` : who(c.grantee);
  return c.kind === "break_glass" ? `Emergency access: ${name}` : capital(name);
}

function roleMask(roles: string[] | null): number {
  return (roles ?? []).reduce((mask, r) => {
    const i = state.roleNames.indexOf(r);
    return i >= 0 ? mask | (1 << i) : mask;
  }, 0);
}

export async function accessView(box: HTMLElement): Promise<void> {
  const msg = messages();
  box.append(
    heading(2, "Who can see my records", "access-h"),
    h("p", {}, "Everyone who may read your records right now, what they may read and until when. Withdrawn and expired permissions are not shown."),
    msg,
  );
  const me = state.session!.address;
  const active = await api.get<ActiveConsent[]>(`/consents/active?patient=${me}`);
  render(box, msg, active);
}

function render(box: HTMLElement, msg: HTMLElement, active: ActiveConsent[]): void {
  box.querySelector("#access-list")?.remove();
  const wrap = h("div", { id: "access-list" });
  if (active.length === 0) {
    wrap.append(h("p", { id: "no-access" }, "Nobody but you and the hospital that stored a record can read your records right now."), h("p", {}, h("a", { href: "#grant" }, "Give someone access")));
    box.append(wrap);
    return;
  }
  const body = h("tbody", {});
  for (const c of [...active].sort((a, b) => a.expires_at - b.expires_at)) {
    const scope = scopeOf(c);
    const what = scopeWords(SCOPE_KINDS[c.scope_kind], scope, c.category);
    const action = h("td", { "data-label": "Action", class: "actions" });
    if (c.kind === "grant" && c.grantee) {
      const grantee = c.grantee;
      const b = h("button", { type: "button", class: "small danger", "aria-label": `Withdraw access of ${readerWords(c)} to ${what}` }, "Withdraw");
      b.addEventListener("click", () =>
        busy(b, msg, async () => {
          showBusy(msg, `Asking your wallet to sign: ${revokeWords(grantee, SCOPE_KINDS[c.scope_kind], scope, c.category)}`);
          const m = await revokeMessage(grantee, SCOPE_KINDS[c.scope_kind], scope);
          const out = await signAndRelay("Revoke", m, (t) => showBusy(msg, t));
          await done(box, msg, out.status, `Withdrawn: ${who(grantee)} can no longer read ${what}.`);
        }),
      );
      action.append(b);
    } else if (c.kind === "class" && c.hospital !== null && roleMask(c.roles) > 0) {
      const hospital = c.hospital;
      const b = h("button", { type: "button", class: "small danger", "aria-label": `Withdraw anonymous access of ${readerWords(c)} to ${what}` }, "Withdraw");
      b.addEventListener("click", () =>
        busy(b, msg, async () => {
          showBusy(msg, `Asking your wallet to sign: you withdraw the anonymous access of ${rolesWords(c.roles)} to ${what}.`);
          const m = await revokeClassMessage(hospital, roleMask(c.roles), SCOPE_KINDS[c.scope_kind], scope);
          const out = await signAndRelay("RevokeClass", m, (t) => showBusy(msg, t));
          await done(box, msg, out.status, `Withdrawn: anonymous ${rolesWords(c.roles)} can no longer read ${what}.`);
        }),
      );
      action.append(b);
    } else {
      action.append(h("span", { class: "muted" }, "Ends by itself"));
    }
    body.append(
      h(
        "tr",
        { "data-kind": c.kind, "data-grantee": c.grantee ?? "" },
        h("td", { "data-label": "Who" }, readerWords(c)),
        h("td", { "data-label": "What" }, capital(what)),
        h("td", { "data-label": "Since" }, formatTime(c.granted_at)),
        h("td", { "data-label": "Until" }, formatTime(c.expires_at)),
        action,
      ),
    );
  }
  wrap.append(
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "responsive", id: "access" },
        h("caption", { class: "visually-hidden" }, "Who can see my records"),
        h("thead", {}, h("tr", {}, ...["Who", "What", "Since", "Until", "Action"].map((t) => h("th", { scope: "col" }, t)))),
        body,
      ),
    ),
  );
  box.append(wrap);
}

async function done(box: HTMLElement, msg: HTMLElement, status: string, text: string): Promise<void> {
  if (status === "queued") {
    showOk(msg, "Signed and queued: the blockchain is not reachable right now, and the node will send your request as soon as it is back.");
    return;
  }
  const active = await api.get<ActiveConsent[]>(`/consents/active?patient=${state.session!.address}`);
  render(box, msg, active);
  showOk(msg, text);
}
