// My records: category, date, hospital, whether it is sealed (anchored) on the blockchain
// with its proof, and the content of a record I own.

import { clear, formatTime, h } from "../lib/dom";
import { api, state } from "./state";
import type { ReceiptOut, RecordOut } from "./types";
import { busy, heading, messages, showError } from "./ui";
import { formatDate, hospitalLabel, recordDate, recordLabel } from "./words";

async function inParallel<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  await Promise.all(
    Array.from({ length: Math.min(limit, queue.length) }, async () => {
      for (let item = queue.shift(); item !== undefined; item = queue.shift()) await work(item);
    }),
  );
}

function sizeWords(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

export async function recordsView(box: HTMLElement): Promise<void> {
  const msg = messages();
  const detail = h("div", { class: "detail" });
  box.append(
    heading(2, "My records", "records-h"),
    h("p", {}, "Every record the hospitals stored for you on this node. “Sealed” means its fingerprint is on the blockchain, so any change to it would show."),
    msg,
  );
  await state.reloadRecords();
  const records = [...(state.records ?? [])].sort((a, b) => recordDate(b) - recordDate(a));
  if (records.length === 0) {
    box.append(h("p", { id: "no-records" }, "No records are stored for you on this node yet."));
    return;
  }
  const receipts = new Map<string, ReceiptOut>();
  const sealedCells = new Map<string, HTMLElement>();
  const table = h(
    "table",
    { class: "responsive", id: "records" },
    h("caption", { class: "visually-hidden" }, "My records"),
    h(
      "thead",
      {},
      h("tr", {}, h("th", { scope: "col" }, "Category"), h("th", { scope: "col" }, "Date"), h("th", { scope: "col" }, "Hospital"), h("th", { scope: "col" }, "On the blockchain"), h("th", { scope: "col" }, "Actions")),
    ),
  );
  const body = h("tbody", {});
  for (const r of records) {
    const label = recordLabel(r.record_id);
    const sealed = h("td", { "data-label": "On the blockchain" }, r.erased ? "Erased" : "Checking…");
    sealedCells.set(r.record_id, sealed);
    const actions = h("td", { "data-label": "Actions", class: "actions" });
    if (!r.erased) {
      const open = h("button", { type: "button", class: "small", "aria-label": `Open ${label}` }, "Open");
      open.addEventListener("click", () => void busy(open, msg, () => openRecord(r, detail)));
      actions.append(open, " ");
    }
    const proof = h("button", { type: "button", class: "small secondary", "aria-label": `Proof of ${label}` }, "Proof");
    proof.addEventListener("click", () => void busy(proof, msg, () => showProof(r, receipts.get(r.record_id), detail)));
    actions.append(proof);
    const title = r.document?.title ? h("span", { class: "muted" }, ` · ${r.document.title}`) : null;
    body.append(
      h(
        "tr",
        { "data-record": r.record_id },
        h("td", { "data-label": "Category" }, h("strong", {}, r.category), title),
        h("td", { "data-label": "Date" }, formatDate(recordDate(r))),
        h("td", { "data-label": "Hospital" }, hospitalLabel(r.creator)),
        sealed,
        actions,
      ),
    );
  }
  table.append(body);
  box.append(h("div", { class: "table-wrap" }, table), detail);
  await inParallel(records, 4, async (r) => {
    const cell = sealedCells.get(r.record_id)!;
    try {
      const receipt = await api.get<ReceiptOut>(`/records/${r.record_id}/receipt`);
      receipts.set(r.record_id, receipt);
      clear(cell);
      if (r.erased) cell.append("Erased", r.erased_at ? ` on ${formatDate(r.erased_at)}` : "");
      else if (receipt.status === "anchored") cell.append(h("span", { class: "ok" }, "✓ Sealed"), ` in block ${receipt.block_number}`);
      else cell.append(h("span", { class: "muted" }, "Not yet sealed (waiting for the next batch)"));
    } catch (err) {
      clear(cell);
      cell.append("Unknown");
      showError(msg, err);
    }
  });
}

async function showProof(r: RecordOut, known: ReceiptOut | undefined, detail: HTMLElement): Promise<void> {
  const receipt = known ?? (await api.get<ReceiptOut>(`/records/${r.record_id}/receipt`));
  clear(detail);
  const rows: [string, Node | string][] = [
    ["Record", h("span", { class: "mono" }, r.record_id)],
    ["Content fingerprint (SHA-256)", h("span", { class: "mono" }, r.content_hash)],
  ];
  if (receipt.status === "anchored") {
    rows.push(
      ["Sealed", `${receipt.anchored_at ? formatTime(receipt.anchored_at) : "yes"}, batch ${receipt.batch_id}, block ${receipt.block_number}`],
      ["Transaction", h("span", { class: "mono" }, receipt.tx_hash ?? "")],
      ["Merkle root on the blockchain", h("span", { class: "mono" }, receipt.root ?? "")],
      ["Leaf", h("span", { class: "mono" }, receipt.leaf ?? "")],
      [
        "Merkle path",
        receipt.proof.length === 0
          ? "none: this record is the only one in its batch"
          : h("ol", { class: "mono proof" }, ...receipt.proof.map((p) => h("li", {}, p))),
      ],
    );
  }
  detail.append(
    h(
      "section",
      { class: "card", "aria-labelledby": "proof-h", id: "proof" },
      heading(3, `Proof of ${recordLabel(r.record_id)}`, "proof-h"),
      h(
        "p",
        {},
        receipt.status === "anchored"
          ? "The record's fingerprint, combined with the hashes of the Merkle path, gives the root stored on the blockchain in this transaction. Anyone can check it with the node's auditor tools."
          : "This record is not sealed yet: the node puts the fingerprints of new records on the blockchain in batches, usually within minutes.",
      ),
      h("dl", { class: "facts" }, ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    ),
  );
  detail.querySelector<HTMLElement>("h3")?.focus();
}

let lastUrl: string | null = null;

async function openRecord(r: RecordOut, detail: HTMLElement): Promise<void> {
  const response = await api.request("GET", `/records/${r.record_id}/content`, undefined, "*/*");
  const blob = await response.blob();
  const type = (response.headers.get("content-type") ?? r.content_type).split(";")[0].trim();
  clear(detail);
  if (lastUrl) URL.revokeObjectURL(lastUrl);
  lastUrl = URL.createObjectURL(blob);
  const section = h(
    "section",
    { class: "card", "aria-labelledby": "content-h", id: "content" },
    heading(3, `Content of ${recordLabel(r.record_id)}`, "content-h"),
    h("p", { class: "muted" }, `${type}, ${sizeWords(blob.size)}`),
  );
  if (type.startsWith("text/") || type === "application/json" || type.endsWith("+json") || type.endsWith("+xml")) {
    const text = await blob.text();
    section.append(h("pre", { class: "content", tabindex: "0", "aria-label": "Record content" }, text.length > 200_000 ? `${text.slice(0, 200_000)}\n…` : text));
  } else if (/^image\/(png|jpeg|gif|webp)$/.test(type)) {
    const url = await new Promise<string>((resolve) => {
      const reader = new FileReader();
      reader.onload = () => resolve(String(reader.result));
      reader.readAsDataURL(blob);
    });
    section.append(h("img", { src: url, alt: `Image of ${recordLabel(r.record_id)}`, class: "content" }));
  } else {
    section.append(h("p", {}, "This kind of file cannot be shown in the page. Download it to open it with another program."));
  }
  section.append(h("p", {}, h("a", { href: lastUrl, download: `record-${r.record_id.slice(2, 10)}` }, "Download this record")));
  detail.append(section);
  section.querySelector<HTMLElement>("h3")?.focus();
}
