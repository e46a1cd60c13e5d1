// Sign-In with Ethereum: the wallet reports its account (for a contract wallet, the
// contract's address), signs the node's challenge, and the node returns a session.

import { ApiError } from "../lib/api";
import { h } from "../lib/dom";
import { connect, hasWallet, NO_WALLET, personalSign } from "../lib/wallet";
import { api, state } from "./state";
import type { SessionOut } from "./types";
import { busy, heading, messages, PlainError, showBusy } from "./ui";

const NOT_CONFIRMED =
  "The node could not confirm that your wallet signed the sign-in message, so you are not signed in. Please try again.";

export function signInView(message: string | undefined, onSignedIn: () => void, isError = true): HTMLElement {
  const box = messages();
  if (message) box.append(h("p", isError ? { class: "error", role: "alert" } : { class: "info", role: "status" }, message));
  const button = h("button", { type: "button", id: "sign-in" }, "Sign in with my wallet");
  button.addEventListener("click", () =>
    busy(button, box, async () => {
      if (!hasWallet()) throw new PlainError(NO_WALLET);
      showBusy(box, "Waiting for your wallet: please allow this page to see your account.");
      const address = await connect();
      const challenge = await api.post<{ message: string }>("/auth/challenge", { address });
      showBusy(box, "Waiting for your wallet: please sign the sign-in message.");
      const signature = await personalSign(challenge.message, address);
      let session: SessionOut;
      try {
        session = await api.post<SessionOut>("/auth/login", { message: challenge.message, signature });
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) throw new PlainError(NOT_CONFIRMED);
        throw err;
      }
      api.token = session.token;
      state.save({ address: session.address, expires_at: session.expires_at, previous_login: session.previous_login ?? null });
      onSignedIn();
    }),
  );
  return h(
    "section",
    { class: "card signin", "aria-labelledby": "signin-h" },
    heading(2, "Sign in", "signin-h"),
    h("p", {}, "Sign in with your wallet to see your records, decide who may read them, and see every time someone opened them."),
    h(
      "p",
      {},
      "Your wallet will ask you to sign a short message from this node. Signing it only proves that the wallet is yours: it costs nothing and changes nothing.",
    ),
    box,
    button,
    h(
      "details",
      {},
      h("summary", {}, "Using a contract wallet, or lost your key?"),
      h(
        "p",
        {},
        "Contract wallets (for example a recoverable wallet with guardians) sign in the same way: your wallet shows the contract's address and signs with its owner key.",
      ),
      h(
        "p",
        {},
        "If you lost the key of a recoverable wallet, ask your guardians to approve a new key under “Recovery” in their own portal. Once the waiting time has passed, sign in with the new key.",
      ),
    ),
  );
}
