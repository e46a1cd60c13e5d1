// SPDX-License-Identifier: GPL-3.0-or-later
pragma circom 2.0.0;

include "bitify.circom";
include "poseidon.circom";

// The registry leaf: Poseidon2(Poseidon1(secret), hospitalId | role << 32 | expiry << 36).
// hospitalId (32 bits) and role (4 bits) are range checked here. licenceExpiry is NOT: the
// caller must bound it (LicenceValid bounds it below 2^41, or a Num2Bits(40)); then attrs
// < 2^77 < r, so (hospitalId, role, expiry) is the only split of the attrs in the leaf.
template CredentialLeaf() {
    signal input secret;
    signal input hospitalId;
    signal input role;
    signal input licenceExpiry;
    signal output leaf;
    signal output roleBits[4];

    component hospitalBits = Num2Bits(32);
    hospitalBits.in <== hospitalId;
    component roleNum = Num2Bits(4);
    roleNum.in <== role;
    for (var i = 0; i < 4; i++) {
        roleBits[i] <== roleNum.out[i];
    }

    component idc = Poseidon(1);
    idc.inputs[0] <== secret;
    component h = Poseidon(2);
    h.inputs[0] <== idc.out;
    h.inputs[1] <== hospitalId + role * (1 << 32) + licenceExpiry * (1 << 36);
    leaf <== h.out;
}

// Poseidon2(scope, secret): the same for one credential, record and epoch.
template EpochNullifier() {
    signal input scope;
    signal input secret;
    signal output out;

    component h = Poseidon(2);
    h.inputs[0] <== scope;
    h.inputs[1] <== secret;
    out <== h.out;
}
