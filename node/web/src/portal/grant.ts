// Give access: a grantee (from the clinician directory, a hospital, or any wallet address),
// a scope (one record, a category, everything) and an expiry. The page shows the EIP-712
// Grant in plain words before the wallet signs exactly that message.

import { getAddress, isAddress, keccak256, toUtf8Bytes } from "ethers";
import { clear, formatTime, h, shortAddress } from "../lib/dom";
import { grantMessage, signAndRelay } from "./consent";
import { state } from "./state";
import { busy, heading, messages, PlainError, showBusy, showOk } from "./ui";
import { capital, formatDate, grantFinePrint, grantWords, recordDate, SCOPE_KINDS, same, scopeWords, who, ZERO32, type GrantMessage } from "./words";

const DURATIONS: [string, number][] = [
  ["1 day", 1],
  ["1 week", 7],
  ["30 days", 30],
  ["90 days", 90],
  ["1 year", 365],
];

let uid = 0;

function radio(name: string, value: string, label: string, checked: boolean): HTMLElement {
  const id = `choice-${name}-${value}`;
  return h(
    "div",
    { class: "choice" },
    h("input", { type: "radio", name, value, id, checked }),
    h("label", { for: id }, label),
  );
}

function field(id: string, label: string, control: HTMLElement, hint?: string): HTMLElement {
  const hintId = hint ? `${id}-hint-${++uid}` : undefined;
  if (hintId) control.setAttribute("aria-describedby", hintId);
  return h("div", { class: "field", id: `${id}-field` }, h("label", { for: id }, label), hint ? h("p", { class: "hint", id: hintId }, hint) : null, control);
}

function fieldError(control: HTMLElement, text: string): PlainError {
  const wrap = control.closest(".field") ?? control.parentElement!;
  const id = `${control.id}-error`;
  wrap.querySelector(`#${id}`)?.remove();
  const p = h("p", { class: "field-error", id }, capital(text));
  wrap.append(p);
  control.setAttribute("aria-invalid", "true");
  control.setAttribute("aria-describedby", [control.getAttribute("aria-describedby"), id].filter(Boolean).join(" "));
  control.focus();
  return new PlainError(`Please correct the form: ${text}`);
}

function clearErrors(form: HTMLElement): void {
  for (const e of form.querySelectorAll(".field-error")) {
    const control = form.querySelector(`#${e.id.replace(/-error$/, "")}`);
    control?.removeAttribute("aria-invalid");
    const rest = (control?.getAttribute("aria-describedby") ?? "").split(" ").filter((x) => x && x !== e.id);
    if (rest.length) control?.setAttribute("aria-describedby", rest.join(" "));
    else control?.removeAttribute("aria-describedby");
    e.remove();
  }
}

export function grantView(box: HTMLElement): void {
  const records = [...(state.records ?? [])].filter((r) => !r.erased).sort((a, b) => recordDate(b) - recordDate(a));
  const categories = state.categories();
  const msg = messages();
  const reviewBox = h("div", { id: "review-box" });

  const directory = h("select", { id: "grantee-directory" });
  if (state.directory.length) {
    directory.append(
      h("optgroup", { label: "Clinicians" }, ...state.directory.map((c) => h("option", { value: c.address }, `${c.name ?? shortAddress(c.address)}, ${c.role}, ${c.hospital_name ?? "member hospital"}`))),
    );
  }
  directory.append(
    h("optgroup", { label: "Hospitals (every clinician they registered)" }, ...[...state.members].map(([address, name]) => h("option", { value: address }, name))),
  );
  const address = h("input", { id: "grantee-address", type: "text", autocomplete: "off", spellcheck: "false", inputmode: "text", placeholder: "0x…", class: "mono" });
  const recordSelect = h(
    "select",
    { id: "scope-record" },
    ...records.map((r) => h("option", { value: r.record_id }, `${r.category} · ${formatDate(recordDate(r))}${r.document?.title ? ` · ${r.document.title}` : ""} · ${shortAddress(r.record_id)}`)),
  );
  const categorySelect = h("select", { id: "scope-category" }, ...categories.map((c) => h("option", { value: c }, c)));
  const durationSelect = h(
    "select",
    { id: "duration" },
    ...DURATIONS.map(([label, days]) => h("option", { value: String(days), selected: days === 30 }, label)),
    h("option", { value: "date" }, "Until a date I choose"),
  );
  const tomorrow = new Date(Date.now() + 86400_000).toISOString().slice(0, 10);
  const untilDate = h("input", { id: "until-date", type: "date", min: tomorrow });

  const whoDirectory = field("grantee-directory", "Clinician or hospital", directory);
  const whoAddress = field("grantee-address", "Wallet address", address, "The reader's wallet address: 0x followed by 40 letters and digits.");
  const scopeRecord = field("scope-record", "Record", recordSelect);
  const scopeCategory = field("scope-category", "Category", categorySelect, "Includes records of this category stored later.");
  const until = field("until-date", "Last day of access", untilDate);

  const form = h(
    "form",
    { id: "grant-form", novalidate: true, "aria-labelledby": "grant-h" },
    h(
      "fieldset",
      {},
      h("legend", {}, "Who may read"),
      radio("who", "directory", "Someone from the clinician directory, or a whole hospital", true),
      radio("who", "address", "Someone else, by wallet address", false),
      whoDirectory,
      whoAddress,
    ),
    h(
      "fieldset",
      {},
      h("legend", {}, "What they may read"),
      radio("scope", "record", "One record", records.length > 0),
      radio("scope", "category", "All my records of one category", false),
      radio("scope", "all", "All my records", records.length === 0),
      scopeRecord,
      scopeCategory,
    ),
    h("fieldset", {}, h("legend", {}, "For how long"), field("duration", "Access ends after", durationSelect), until),
    h("button", { type: "submit", id: "grant-review" }, "Review before signing"),
  );
  if (records.length === 0) {
    for (const v of ["record", "category"]) form.querySelector<HTMLInputElement>(`#choice-scope-${v}`)!.disabled = true;
  }

  const choice = (name: string): string => form.querySelector<HTMLInputElement>(`input[name=${name}]:checked`)?.value ?? "";
  const sync = (): void => {
    whoDirectory.hidden = choice("who") !== "directory";
    whoAddress.hidden = choice("who") !== "address";
    scopeRecord.hidden = choice("scope") !== "record";
    scopeCategory.hidden = choice("scope") !== "category";
    until.hidden = durationSelect.value !== "date";
    reviewBox.hidden = true;
  };
  form.addEventListener("change", sync);
  sync();

  const read = (): { grantee: string; scopeKind: number; scope: string; expiresAt: number } => {
    clearErrors(form);
    let grantee: string;
    if (choice("who") === "address") {
      const raw = address.value.trim();
      if (!isAddress(raw)) throw fieldError(address, "this is not a wallet address (0x followed by 40 letters and digits).");
      grantee = getAddress(raw.toLowerCase());
      if (same(grantee, state.session!.address)) throw fieldError(address, "this is your own wallet; you can always read your records.");
    } else {
      if (!directory.value) throw fieldError(directory, "choose a clinician or a hospital.");
      grantee = directory.value;
    }
    const kind = choice("scope");
    let scope = ZERO32;
    if (kind === "record") {
      if (!recordSelect.value) throw fieldError(recordSelect, "choose a record.");
      scope = recordSelect.value;
    } else if (kind === "category") {
      if (!categorySelect.value) throw fieldError(categorySelect, "choose a category.");
      scope = keccak256(toUtf8Bytes(categorySelect.value));
    }
    let expiresAt: number;
    if (durationSelect.value === "date") {
      if (!untilDate.value) throw fieldError(untilDate, "choose the last day of access.");
      const end = new Date(`${untilDate.value}T23:59:00`);
      if (Number.isNaN(end.getTime()) || end.getTime() <= Date.now()) throw fieldError(untilDate, "choose a day in the future.");
      expiresAt = Math.floor(end.getTime() / 1000);
    } else {
      expiresAt = Math.floor(Date.now() / 1000) + Number(durationSelect.value) * 86400;
    }
    return { grantee, scopeKind: SCOPE_KINDS[kind as keyof typeof SCOPE_KINDS], scope, expiresAt };
  };

  const submit = form.querySelector<HTMLButtonElement>("#grant-review")!;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void busy(submit, msg, async () => {
      clear(msg);
      const wanted = read();
      const m = await grantMessage(wanted.grantee, wanted.scopeKind, wanted.scope, wanted.expiresAt);
      review(m, reviewBox, form);
    });
  });

  box.append(
    heading(2, "Give access", "grant-h"),
    h("p", {}, "Let a clinician or a hospital read some of your records until a date you choose. Your wallet signs the permission; nobody else can give it for you, and you can withdraw it at any time."),
    form,
    msg,
    reviewBox,
  );
}

function review(m: GrantMessage, reviewBox: HTMLElement, form: HTMLFormElement): void {
  clear(reviewBox);
  reviewBox.hidden = false;
  const msg = messages();
  const sign = h("button", { type: "button", id: "grant-sign" }, "Sign with my wallet");
  const change = h("button", { type: "button", class: "secondary", id: "grant-change" }, "Change something");
  const domain = state.typed!.domain;
  const facts: [string, string][] = [
    ["Patient (you)", m.patient],
    ["Reader (grantee)", m.grantee],
    ["Scope", `${["one record", "one category", "all records"][m.scopeKind]} (${m.scopeKind}): ${m.scope}`],
    ["Ends (expiresAt)", `${formatTime(m.expiresAt)} (${m.expiresAt})`],
    ["Number of this signature (nonce)", String(m.nonce)],
    ["Valid for sending until (deadline)", `${formatTime(m.deadline)} (${m.deadline})`],
    ["Signed for", `${String(domain.name)} ${String(domain.version)}, chain ${String(domain.chainId)}, contract ${String(domain.verifyingContract)}`],
  ];
  const section = h(
    "section",
    { class: "card review", id: "review", "aria-labelledby": "review-h" },
    heading(3, "Check before you sign", "review-h"),
    h("p", { id: "grant-words", class: "words" }, grantWords(m)),
    h("p", { class: "muted" }, grantFinePrint(m)),
    h(
      "details",
      {},
      h("summary", {}, "What your wallet will sign, field by field"),
      h("dl", { class: "facts mono-values" }, ...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { class: "mono" }, v)])),
    ),
    msg,
    h("div", { class: "buttons" }, sign, " ", change),
  );
  change.addEventListener("click", () => {
    reviewBox.hidden = true;
    form.querySelector<HTMLElement>("input, select")?.focus();
  });
  sign.addEventListener("click", () =>
    busy(sign, msg, async () => {
      const out = await signAndRelay("Grant", m, (t) => showBusy(msg, t));
      if (out.status === "queued") {
        showOk(msg, "Signed and queued: the blockchain is not reachable right now, and the node will send your permission as soon as it is back.");
      } else {
        const what = scopeWords(m.scopeKind, m.scope);
        showOk(
          msg,
          `Done: ${who(m.grantee)} may now read ${what} until ${formatTime(m.expiresAt)}. `,
          h("a", { href: "#access" }, "See who can see my records"),
        );
        sign.remove();
        change.textContent = "Give another permission";
      }
      msg.querySelector<HTMLElement>("p")?.setAttribute("tabindex", "-1");
      msg.querySelector<HTMLElement>("p")?.focus();
    }),
  );
  reviewBox.append(section);
  section.querySelector<HTMLElement>("h3")?.focus();
}
