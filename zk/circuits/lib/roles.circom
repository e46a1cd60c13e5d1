// SPDX-License-Identifier: GPL-3.0-or-later
pragma circom 2.0.0;

include "bitify.circom";
include "comparators.circom";
include "multiplexer.circom";

function emrBitLength(a) {
    var n = 0;
    while ((1 << n) < a) {
        n++;
    }
    return n;
}

// role < NROLES and bit `role` of the allowedRoles mask is set. The mask is range checked to
// NROLES bits, so a prover cannot pass a value whose low bits differ from the public one.
template RoleAllowed(NROLES) {
    signal input role;
    signal input allowedRoles;

    var NBITS = emrBitLength(NROLES);
    component roleBits = Num2Bits(NBITS);
    roleBits.in <== role;
    if ((1 << NBITS) != NROLES) {
        component below = LessThan(NBITS);
        below.in[0] <== role;
        below.in[1] <== NROLES;
        below.out === 1;
    }

    component maskBits = Num2Bits(NROLES);
    maskBits.in <== allowedRoles;

    component onehot = Decoder(NROLES);
    onehot.inp <== role;
    onehot.success === 1;

    component selected = EscalarProduct(NROLES);
    for (var i = 0; i < NROLES; i++) {
        selected.in1[i] <== onehot.out[i];
        selected.in2[i] <== maskBits.out[i];
    }
    selected.out === 1;
}

// As RoleAllowed with the mask fixed at compile time: the selected bit becomes a linear sum
// over the allowed roles, and there is no mask input (a new mask needs new keys).
template RoleAllowedFixed(NROLES, MASK) {
    signal input role;

    var NBITS = emrBitLength(NROLES);
    component roleBits = Num2Bits(NBITS);
    roleBits.in <== role;
    if ((1 << NBITS) != NROLES) {
        component below = LessThan(NBITS);
        below.in[0] <== role;
        below.in[1] <== NROLES;
        below.out === 1;
    }

    component onehot = Decoder(NROLES);
    onehot.inp <== role;
    onehot.success === 1;

    var selected = 0;
    for (var i = 0; i < NROLES; i++) {
        if (((MASK >> i) & 1) == 1) {
            selected += onehot.out[i];
        }
    }
    selected === 1;
}
