// SPDX-License-Identifier: GPL-3.0-or-later
pragma circom 2.0.0;

include "poseidon.circom";

// The credential commitment a hospital inserts in the credential tree:
// leaf = Poseidon(secret, hospitalId, role, licenceExpiry).
template CredentialLeaf() {
    signal input secret;
    signal input hospitalId;
    signal input role;
    signal input licenceExpiry;
    signal output leaf;

    component h = Poseidon(4);
    h.inputs[0] <== secret;
    h.inputs[1] <== hospitalId;
    h.inputs[2] <== role;
    h.inputs[3] <== licenceExpiry;
    leaf <== h.out;
}

// Semaphore-style nullifier: one per (record, signal) context and credential secret, so a
// relayer can refuse replays without learning who the clinician is.
template NullifierHash() {
    signal input externalNullifier;
    signal input secret;
    signal output out;

    component h = Poseidon(2);
    h.inputs[0] <== externalNullifier;
    h.inputs[1] <== secret;
    out <== h.out;
}
