// SPDX-License-Identifier: GPL-3.0-or-later
pragma circom 2.0.0;

include "bitify.circom";
include "comparators.circom";

// dateOfBirth + minAge years <= currentDate with dates as YYYYMMDD integers: adding
// minAge * 10000 moves the year only, and integer order is calendar order, so this is the exact
// birthday rule (a 29 February birth comes of age on 1 March in non-leap years).
template DateAtLeast() {
    signal input dateOfBirth;
    signal input currentDate;
    signal input minAge;

    component dobBits = Num2Bits(32);
    dobBits.in <== dateOfBirth;
    component nowBits = Num2Bits(32);
    nowBits.in <== currentDate;
    component ageBits = Num2Bits(8);
    ageBits.in <== minAge;

    // dateOfBirth + minAge * 10000 < 2^32 + 2^22 < 2^33.
    component le = LessEqThan(33);
    le.in[0] <== dateOfBirth + minAge * 10000;
    le.in[1] <== currentDate;
    le.out === 1;
}
