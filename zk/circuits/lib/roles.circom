// SPDX-License-Identifier: GPL-3.0-or-later
pragma circom 2.0.0;

// Bit `role` of the 16-bit mask is 1, with role and mask given as bits (already boolean).
// A 16-to-1 multiplexer over the mask bits, one role bit per level: 8 + 4 + 2 + 1
// multiplications (a Decoder(16) with an inner product would take 33).
template RoleInMask() {
    signal input roleBits[4];
    signal input maskBits[16];

    signal level0[8];
    for (var k = 0; k < 8; k++) {
        level0[k] <== maskBits[2 * k] + roleBits[0] * (maskBits[2 * k + 1] - maskBits[2 * k]);
    }
    signal level1[4];
    for (var k = 0; k < 4; k++) {
        level1[k] <== level0[2 * k] + roleBits[1] * (level0[2 * k + 1] - level0[2 * k]);
    }
    signal level2[2];
    for (var k = 0; k < 2; k++) {
        level2[k] <== level1[2 * k] + roleBits[2] * (level1[2 * k + 1] - level1[2 * k]);
    }
    // level2[0] + roleBits[3] * (level2[1] - level2[0]) == 1
    roleBits[3] * (level2[1] - level2[0]) === 1 - level2[0];
}
