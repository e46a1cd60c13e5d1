// SPDX-License-Identifier: GPL-3.0-or-later
pragma circom 2.0.0;

include "bitify.circom";
include "comparators.circom";

// currentTime < licenceExpiry, both unix seconds. LessThan(64) is only sound for inputs below
// 2^64, so both are range checked first (otherwise a wrapped field element could pass).
template LicenceValid() {
    signal input currentTime;
    signal input licenceExpiry;

    component nowBits = Num2Bits(64);
    nowBits.in <== currentTime;
    component expiryBits = Num2Bits(64);
    expiryBits.in <== licenceExpiry;

    component lt = LessThan(64);
    lt.in[0] <== currentTime;
    lt.in[1] <== licenceExpiry;
    lt.out === 1;
}
