// Key loss: a recoverable wallet (a contract wallet with guardians). The owner sees the
// guardians and any pending recovery, and cancels one they did not ask for (the owner key
// signs CancelRecovery); a guardian approves a new owner for someone's wallet (signs
// ApproveRecovery); anyone completes a recovery once its waiting time has passed.

import { getAddress, isAddress } from "ethers";
import { ApiError } from "../lib/api";
import { clear, formatTime, h } from "../lib/dom";
import { signTypedData, type TypedData } from "../lib/wallet";
import { api, state } from "./state";
import type { PendingRecovery, WalletOut, WalletTypedDataOut } from "./types";
import { busy, heading, messages, PlainError, showBusy, showOk } from "./ui";
import { duration, same, who } from "./words";

const DEADLINE_SECONDS = 3600;

/** The wallet at `address`, or null when it is not a recoverable wallet. */
export async function recoverableWallet(address: string): Promise<WalletOut | null> {
  try {
    return await api.get<WalletOut>(`/wallets/${address}`);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null;
    throw err;
  }
}

async function typedFor(wallet: string, primaryType: string, message: Record<string, unknown>): Promise<TypedData> {
  const t = await api.get<WalletTypedDataOut>(`/wallets/${wallet}/typed-data`);
  const domainType =
    t.types.EIP712Domain ??
    ["name", "version", "chainId", "verifyingContract"].filter((k) => k in t.domain).map((name) => ({ name, type: name === "chainId" ? "uint256" : name === "verifyingContract" ? "address" : "string" }));
  return { types: { EIP712Domain: domainType, [primaryType]: t.types[primaryType] }, primaryType, domain: t.domain, message };
}

function deadline(): number {
  return Math.floor(Date.now() / 1000) + DEADLINE_SECONDS;
}

function guardiansList(w: WalletOut): HTMLElement {
  return h("ul", { class: "guardians" }, ...w.guardians.map((g) => h("li", {}, who(g), w.pending?.approvals.some((a) => same(a, g)) ? " — approved the pending recovery" : "")));
}

function pendingWords(w: WalletOut, p: PendingRecovery): string {
  const approved = `${p.approvals.length} of the ${w.threshold} required guardians approved moving this wallet to the new key ${p.new_owner}.`;
  if (p.eta === null) return `Approvals so far: ${approved} The move can be completed ${duration(w.delay)} after the last required approval.`;
  const when = p.ready ? "The waiting time is over: anyone can now complete it." : `It can be completed after ${formatTime(p.eta)}.`;
  return `A recovery is pending: ${approved} ${when}`;
}

function finalizeButton(w: WalletOut, msg: HTMLElement, after: () => Promise<void>): HTMLButtonElement {
  const b = h("button", { type: "button", id: "recovery-finalize" }, "Complete the recovery");
  b.addEventListener("click", () =>
    busy(b, msg, async () => {
      showBusy(msg, "The node is completing the recovery on the blockchain…");
      const out = await api.post<{ owner: string; tx_hash: string }>(`/wallets/${w.address}/recovery/finalize`, {});
      await after();
      showOk(msg, `Done: the wallet ${w.address} is now controlled by the key ${out.owner}.`);
    }),
  );
  return b;
}

async function myWallet(section: HTMLElement): Promise<void> {
  const me = state.session!.address;
  const msg = messages();
  const body = h("div", { id: "my-wallet" });
  section.append(heading(3, "My wallet", "my-wallet-h"), msg, body);
  const draw = async (): Promise<void> => {
    const w = await recoverableWallet(me);
    clear(body);
    if (!w) {
      body.append(
        h("p", { id: "not-recoverable" }, `Your wallet ${me} is an ordinary wallet with one key. If you lose that key, nobody can move your records' permissions to a new one.`),
        h("p", {}, "To be safe from key loss, ask your hospital for a recoverable wallet: a contract wallet with guardians (people or devices you trust) who can together move it to a new key after a waiting time, which you can cancel."),
      );
      return;
    }
    body.append(
      h("p", {}, `Your wallet is a recoverable wallet. It is controlled by the key ${w.owner}.`),
      h("p", {}, `Any ${w.threshold} of your ${w.guardians.length} guardians together can move it to a new key if you lose yours. The change waits ${duration(w.delay)} before it takes effect, so you can cancel a recovery you did not ask for.`),
      h("h4", {}, "Guardians"),
      guardiansList(w),
    );
    if (!w.pending) {
      body.append(h("p", { id: "no-pending" }, "No recovery is pending."));
      return;
    }
    const cancel = h("button", { type: "button", class: "danger", id: "recovery-cancel" }, "Cancel this recovery");
    cancel.addEventListener("click", () =>
      busy(cancel, msg, async () => {
        showBusy(msg, "Asking your wallet to sign: you cancel the pending recovery and keep your current key.");
        const fresh = (await recoverableWallet(me))!;
        const d = deadline();
        const typed = await typedFor(me, "CancelRecovery", { nonce: fresh.nonce, deadline: d });
        const signature = await signTypedData(me, typed);
        showBusy(msg, "Signed. The node is recording the cancellation on the blockchain…");
        await api.post(`/wallets/${me}/recovery/cancel`, { deadline: d, signature });
        await draw();
        showOk(msg, "Cancelled: the recovery is stopped and your wallet keeps its current key.");
      }),
    );
    body.append(
      h("div", { class: "notice", id: "pending-recovery", role: "note" }, h("p", {}, pendingWords(w, w.pending)), h("p", {}, "If you did not ask for this, cancel it now: your current key signs the cancellation.")),
      h("div", { class: "buttons" }, cancel, " ", w.pending.ready ? finalizeButton(w, msg, draw) : null),
    );
  };
  await draw();
}

function guardianForm(section: HTMLElement): void {
  const me = state.session!.address;
  const msg = messages();
  const result = h("div", { id: "guardian-result" });
  const wallet = h("input", { id: "recover-wallet", type: "text", class: "mono", autocomplete: "off", spellcheck: "false", placeholder: "0x…" });
  const newOwner = h("input", { id: "recover-new-owner", type: "text", class: "mono", autocomplete: "off", spellcheck: "false", placeholder: "0x…" });
  const submit = h("button", { type: "submit", id: "recover-review" }, "Review before signing");
  const form = h(
    "form",
    { id: "guardian-form", novalidate: true, "aria-labelledby": "guardian-h" },
    h("div", { class: "field" }, h("label", { for: "recover-wallet" }, "The wallet to recover"), h("p", { class: "hint", id: "recover-wallet-hint" }, "The recoverable wallet of the person who lost their key."), wallet),
    h("div", { class: "field" }, h("label", { for: "recover-new-owner" }, "Their new key"), h("p", { class: "hint", id: "recover-new-owner-hint" }, "The address of the new key they gave you, in person or by a channel you trust."), newOwner),
    submit,
  );
  wallet.setAttribute("aria-describedby", "recover-wallet-hint");
  newOwner.setAttribute("aria-describedby", "recover-new-owner-hint");
  const parse = (input: HTMLInputElement, what: string): string => {
    const raw = input.value.trim();
    if (!isAddress(raw)) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
      throw new PlainError(`${what} is not a wallet address (0x followed by 40 letters and digits).`);
    }
    input.removeAttribute("aria-invalid");
    return getAddress(raw.toLowerCase());
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void busy(submit, msg, async () => {
      clear(msg);
      clear(result);
      const target = parse(wallet, "The wallet to recover");
      const owner = parse(newOwner, "The new key");
      const w = await recoverableWallet(target);
      if (!w) throw new PlainError(`The wallet ${target} is not a recoverable wallet, so it cannot be recovered through guardians.`);
      if (!w.guardians.some((g) => same(g, me))) throw new PlainError(`You (${me}) are not one of the guardians of ${target}, so your approval would not count.`);
      const status = h("div", { id: "guardian-status" });
      const draw = (now: WalletOut, pending: PendingRecovery | null): void => {
        clear(status);
        if (!pending) return;
        status.append(h("p", { id: "guardian-pending" }, pendingWords(now, pending)));
        if (pending.ready) {
          status.append(finalizeButton(now, msg, show));
        } else if (pending.eta !== null) {
          const again = h("button", { type: "button", class: "secondary", id: "recovery-check" }, "Check again");
          again.addEventListener("click", () => void busy(again, msg, show));
          status.append(again);
        }
      };
      const show = async (): Promise<void> => {
        const now = (await recoverableWallet(target))!;
        draw(now, now.pending);
      };
      const words = `You approve moving the wallet ${target} to the new key ${owner}. When ${w.threshold} of its ${w.guardians.length} guardians have approved, the move takes effect after ${duration(w.delay)}, unless the wallet's current key cancels it.`;
      const approve = h("button", { type: "button", id: "recover-approve" }, "Approve with my wallet");
      approve.addEventListener("click", () =>
        busy(approve, msg, async () => {
          const fresh = (await recoverableWallet(target))!;
          const d = deadline();
          const typed = await typedFor(target, "ApproveRecovery", { newOwner: owner, nonce: fresh.nonce, deadline: d });
          showBusy(msg, "Waiting for your wallet: please check the request there and sign it.");
          const signature = await signTypedData(me, typed);
          showBusy(msg, "Signed. The node is recording your approval on the blockchain…");
          const out = await api.post<{ tx_hash: string; pending: PendingRecovery }>(`/wallets/${target}/recovery/approvals`, { new_owner: owner, guardian: me, deadline: d, signature });
          approve.remove();
          const title = result.querySelector<HTMLElement>("#approve-h");
          if (title) title.textContent = "What you signed";
          draw(fresh, out.pending);
          showOk(msg, "Approved: your approval is recorded on the blockchain.");
        }),
      );
      result.append(
        h("section", { class: "card review", "aria-labelledby": "approve-h" }, heading(3, "Check before you sign", "approve-h"), h("p", { id: "approve-words", class: "words" }, words), approve),
      );
      result.append(status);
      draw(w, w.pending);
      result.querySelector<HTMLElement>("h3")?.focus();
    });
  });
  section.append(
    heading(3, "Help someone recover their wallet", "guardian-h"),
    h("p", {}, "If you are a guardian of someone's recoverable wallet and they lost their key, approve their new key here. Your wallet signs the approval; the node sends it, so it costs you nothing."),
    form,
    msg,
    result,
  );
}

export async function recoveryView(box: HTMLElement): Promise<void> {
  const mine = h("section", { class: "card", "aria-labelledby": "my-wallet-h" });
  const guardian = h("section", { class: "card", "aria-labelledby": "guardian-h" });
  box.append(
    heading(2, "Recovery", "recovery-h"),
    h("p", {}, "What happens if you lose your wallet's key, and how to help someone who lost theirs."),
    mine,
    guardian,
  );
  guardianForm(guardian);
  await myWallet(mine);
}
