// SPDX-License-Identifier: GPL-3.0-or-later
pragma circom 2.0.0;

include "credential.circom";
include "merkle.circom";
include "roles.circom";
include "licence.circom";
include "signal.circom";

// A clinician holds a credential in the consortium's credential tree whose role is allowed for
// the record's category and whose licence has not expired, and spends the nullifier of this
// (record, signal) context. Public inputs are declared in the order the contracts pass them.
template ClinicianAccess(DEPTH, NROLES) {
    // Public, in this order.
    signal input root;
    signal input allowedRoles;
    signal input currentTime;
    signal input externalNullifier;
    signal input nullifierHash;
    signal input signalHash;
    // Private.
    signal input secret;
    signal input hospitalId;
    signal input role;
    signal input licenceExpiry;
    signal input pathElements[DEPTH];
    signal input pathIndices[DEPTH];

    component leaf = CredentialLeaf();
    leaf.secret <== secret;
    leaf.hospitalId <== hospitalId;
    leaf.role <== role;
    leaf.licenceExpiry <== licenceExpiry;

    component tree = BinaryMerkleRoot(DEPTH);
    tree.leaf <== leaf.leaf;
    for (var i = 0; i < DEPTH; i++) {
        tree.pathElements[i] <== pathElements[i];
        tree.pathIndices[i] <== pathIndices[i];
    }
    root === tree.root;

    component roleCheck = RoleAllowed(NROLES);
    roleCheck.role <== role;
    roleCheck.allowedRoles <== allowedRoles;

    component licence = LicenceValid();
    licence.currentTime <== currentTime;
    licence.licenceExpiry <== licenceExpiry;

    component nullifier = NullifierHash();
    nullifier.externalNullifier <== externalNullifier;
    nullifier.secret <== secret;
    nullifierHash === nullifier.out;

    component binding = SignalBinding();
    binding.signalHash <== signalHash;
}

component main {public [root, allowedRoles, currentTime, externalNullifier, nullifierHash, signalHash]} = ClinicianAccess(20, 16);
