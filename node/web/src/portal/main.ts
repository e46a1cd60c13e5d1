// The patient portal: sign in with a wallet, then my records, who may see them, granting
// and withdrawing access, every access on a timeline, and wallet recovery.

import { clear, formatTime, h } from "../lib/dom";
import { onAccountsChanged } from "../lib/wallet";
import { accessView } from "./access";
import { grantView } from "./grant";
import { recordsView } from "./records";
import { recoveryView } from "./recovery";
import { signInView } from "./signin";
import { api, state } from "./state";
import { breakGlassSince, timelineView } from "./timeline";
import type { AuditEvent } from "./types";
import { busy, heading, messages, sentence, showError, whenSessionExpires } from "./ui";
import { eventWords, same } from "./words";

type View = (container: HTMLElement) => void | Promise<void>;

const VIEWS: { id: string; label: string; view: View }[] = [
  { id: "records", label: "My records", view: recordsView },
  { id: "access", label: "Who can see my records", view: accessView },
  { id: "grant", label: "Give access", view: grantView },
  { id: "history", label: "Access history", view: timelineView },
  { id: "recovery", label: "Recovery", view: recoveryView },
];

const main = document.getElementById("main")!;
let viewBox: HTMLElement | null = null;
let nav: HTMLElement | null = null;

function showSignIn(message?: string, isError = true): void {
  state.forget();
  viewBox = null;
  clear(main);
  main.append(signInView(message, () => void start(), isError));
  document.title = "Sign in · Patient portal · emr-node";
  if (location.hash) history.replaceState(null, "", location.pathname);
}

whenSessionExpires((text) => showSignIn(text));

async function signOut(): Promise<void> {
  try {
    await api.request("POST", "/auth/logout");
  } catch {
    /* the session ends here either way */
  }
  showSignIn("You have signed out.", false);
}

const DISMISSED_KEY = "emr-portal-dismissed";

function dismissed(): Set<string> {
  return new Set(JSON.parse(sessionStorage.getItem(DISMISSED_KEY) ?? "[]") as string[]);
}

function noticesSection(events: AuditEvent[]): HTMLElement | null {
  const gone = dismissed();
  const fresh = events.filter((e) => !gone.has(`${e.tx_hash}:${e.log_index}`));
  if (fresh.length === 0) return null;
  const since = state.session?.previous_login;
  const section = h(
    "section",
    { class: "notices", "aria-labelledby": "notices-h", id: "notices" },
    heading(2, since ? `Emergency access since your last visit (${formatTime(since)})` : "Emergency access to your records", "notices-h"),
  );
  for (const e of fresh) {
    const key = `${e.tx_hash}:${e.log_index}`;
    const item = h(
      "div",
      { class: "notice", role: "note" },
      h("p", {}, h("strong", {}, `${formatTime(e.timestamp)}: `), eventWords(e)),
    );
    const button = h("button", { type: "button", class: "secondary small" }, "I have seen this");
    button.addEventListener("click", () => {
      sessionStorage.setItem(DISMISSED_KEY, JSON.stringify([...dismissed(), key]));
      item.remove();
      if (!section.querySelector(".notice")) section.remove();
      viewBox?.querySelector<HTMLElement>("h2")?.focus();
    });
    item.append(h("p", {}, h("a", { href: "#history" }, "See the access history"), " ", button));
    section.append(item);
  }
  return section;
}

async function start(): Promise<void> {
  clear(main);
  const box = messages();
  main.append(box, h("p", { class: "busy", role: "status" }, "Loading your records…"));
  try {
    await state.load();
  } catch (err) {
    if (!state.session) return; // expired: already back at sign-in
    clear(main);
    const retry = h("button", { type: "button" }, "Try again");
    retry.addEventListener("click", () => void start());
    main.append(box, retry);
    showError(box, err);
    return;
  }
  if (!state.session) return;
  const me = state.session.address;
  const out = h("button", { type: "button", class: "secondary" }, "Sign out");
  out.addEventListener("click", () => void busy(out, box, signOut));
  nav = h(
    "nav",
    { "aria-label": "Portal sections" },
    h("ul", { class: "tabs" }, ...VIEWS.map((v) => h("li", {}, h("a", { href: `#${v.id}`, "data-view": v.id }, v.label)))),
  );
  viewBox = h("div", { class: "view" });
  clear(main);
  main.append(
    h(
      "div",
      { class: "account" },
      h("p", {}, "Signed in as ", h("span", { class: "mono", id: "me" }, me)),
      out,
    ),
    nav,
    box,
    viewBox,
  );
  void route(false, true);
  try {
    const notices = noticesSection(await breakGlassSince(state.session.previous_login));
    if (notices && viewBox) main.insertBefore(notices, nav);
  } catch (err) {
    if (state.session) showError(box, err);
  }
}

async function route(focus = true, initial = false): Promise<void> {
  if (!viewBox || !nav) return;
  const id = location.hash.replace(/^#/, "") || "records";
  const view = VIEWS.find((v) => v.id === id) ?? (initial ? VIEWS[0] : undefined);
  if (!view) return; // an in-page link (the skip link): not a section
  for (const a of nav.querySelectorAll("a")) {
    if (a.dataset.view === view.id) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `${view.label} · Patient portal · emr-node`;
  const box = viewBox;
  clear(box);
  try {
    await view.view(box);
  } catch (err) {
    const text = sentence(err);
    if (state.session && viewBox === box) box.append(h("p", { class: "error", role: "alert" }, text));
  }
  if (focus && viewBox === box) box.querySelector<HTMLElement>("h2")?.focus();
}

window.addEventListener("hashchange", () => void route());
onAccountsChanged((accounts) => {
  if (state.session && !same(accounts[0], state.session.address)) {
    showSignIn("Your wallet switched to another account. Please sign in again.");
  }
});

state.restore();
if (state.session) void start();
else showSignIn();
