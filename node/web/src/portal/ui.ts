// Messages shown to the person: errors in plain words (never a stack trace or raw JSON),
// successes, and the way back to sign-in when a session has expired.

import { ApiError } from "../lib/api";
import { clear, h } from "../lib/dom";
import { WalletError } from "../lib/wallet";

export const EXPIRED = "Your session has expired or is not valid. Please sign in again.";
const UNKNOWN = "Something went wrong on this page; nothing was changed. Please reload the page and try again.";

/** An error whose message is already a sentence for the person. */
export class PlainError extends Error {}

let onExpired: (sentence: string) => void = () => undefined;

export function whenSessionExpires(handler: (sentence: string) => void): void {
  onExpired = handler;
}

/** The sentence for an error; a 401 also sends the person back to sign-in. */
export function sentence(err: unknown): string {
  if (err instanceof WalletError || err instanceof PlainError) return err.message;
  if (err instanceof ApiError) {
    if (err.status === 401) {
      onExpired(EXPIRED);
      return EXPIRED;
    }
    return err.message;
  }
  return UNKNOWN;
}

/** Shows `err` in `box` (a live region) as a sentence. */
export function showError(box: HTMLElement, err: unknown): void {
  const text = sentence(err);
  clear(box);
  box.append(h("p", { class: "error", role: "alert" }, text));
}

export function showOk(box: HTMLElement, ...children: (Node | string)[]): void {
  clear(box);
  box.append(h("p", { class: "success", role: "status" }, ...children));
}

export function showBusy(box: HTMLElement, text: string): void {
  clear(box);
  box.append(h("p", { class: "busy", role: "status" }, text));
}

/** A region that announces what is put into it. */
export function messages(): HTMLDivElement {
  return h("div", { class: "messages", "aria-live": "polite" });
}

export function heading(level: 2 | 3, text: string, id?: string): HTMLHeadingElement {
  return h(level === 2 ? "h2" : "h3", { id, tabindex: "-1" }, text);
}

/** Runs `work` with `button` disabled; errors land in `box`. */
export async function busy(button: HTMLButtonElement, box: HTMLElement, work: () => Promise<void>): Promise<void> {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    await work();
  } catch (err) {
    showError(box, err);
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}
