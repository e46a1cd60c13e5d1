// SPDX-License-Identifier: GPL-3.0-or-later
pragma circom 2.0.0;

include "context.circom";
include "credential.circom";
include "lean_imt.circom";
include "roles.circom";
include "hospital.circom";
include "licence.circom";

// A clinician holds a live credential in the consortium's LeanIMT whose role is in the
// context's roles mask (the patient's class consent AND the consortium's category policy),
// whose issuing hospital is the class's (or the class takes any member hospital), and whose
// licence is valid at the context's time; epochNullifier is Poseidon2(scope, secret), with
// scope committing to chain, gate, record and epoch. Public inputs in the gate's order.
template ClinicianAccess(MAX_DEPTH) {
    // Public, in this order.
    signal input root;
    signal input context;
    signal input scope;
    signal input epochNullifier;
    // Private.
    signal input secret;
    signal input hospitalId;
    signal input role;
    signal input licenceExpiry;
    signal input depth;
    signal input index;
    signal input siblings[MAX_DEPTH];

    component ctx = AccessContext();
    ctx.context <== context;

    component credential = CredentialLeaf();
    credential.secret <== secret;
    credential.hospitalId <== hospitalId;
    credential.role <== role;
    credential.licenceExpiry <== licenceExpiry;

    component tree = LeanIMTRoot(MAX_DEPTH);
    tree.leaf <== credential.leaf;
    tree.depth <== depth;
    tree.index <== index;
    for (var i = 0; i < MAX_DEPTH; i++) {
        tree.siblings[i] <== siblings[i];
    }
    root === tree.root;

    component roleCheck = RoleInMask();
    for (var i = 0; i < 4; i++) {
        roleCheck.roleBits[i] <== credential.roleBits[i];
    }
    for (var i = 0; i < 16; i++) {
        roleCheck.maskBits[i] <== ctx.maskBits[i];
    }

    component hospital = HospitalInClass();
    hospital.classHospital <== ctx.classHospital;
    hospital.hospitalId <== hospitalId;

    component licence = LicenceValid();
    licence.currentTime <== ctx.currentTime;
    licence.licenceExpiry <== licenceExpiry;

    component nullifier = EpochNullifier();
    nullifier.scope <== scope;
    nullifier.secret <== secret;
    epochNullifier === nullifier.out;
}

component main {public [root, context, scope, epochNullifier]} = ClinicianAccess(20);
