// SPDX-License-Identifier: GPL-3.0-or-later
pragma circom 2.0.0;

include "bitify.circom";

// currentTime < licenceExpiry for currentTime < 2^40 (the caller's range check):
// licenceExpiry - currentTime - 1 fits 40 bits. Any licenceExpiry passing it is below 2^41,
// and an expired one wraps to a field element of ~254 bits, so no wrap can pass.
template LicenceValid() {
    signal input currentTime;
    signal input licenceExpiry;

    component margin = Num2Bits(40);
    margin.in <== licenceExpiry - currentTime - 1;
}
