// SPDX-License-Identifier: GPL-3.0-or-later
pragma circom 2.0.0;

include "bitify.circom";

// The public access context, one field element:
//   context = currentTime | mask << 40 | classHospital << 56 | signalTag << 88   (< 2^240).
// Num2Bits(240) makes the split unique (240 < 254 bits: no wrap mod r), which also binds the
// signal tag (bits 88..239) although nothing else reads it. currentTime < 2^40 and
// classHospital < 2^32 by construction.
template AccessContext() {
    signal input context;
    signal output currentTime;
    signal output maskBits[16];
    signal output classHospital;

    component bits = Num2Bits(240);
    bits.in <== context;

    var time = 0;
    for (var i = 0; i < 40; i++) {
        time += bits.out[i] * (1 << i);
    }
    currentTime <== time;
    for (var i = 0; i < 16; i++) {
        maskBits[i] <== bits.out[40 + i];
    }
    var hospital = 0;
    for (var i = 0; i < 32; i++) {
        hospital += bits.out[56 + i] * (1 << i);
    }
    classHospital <== hospital;
}
