// SPDX-License-Identifier: GPL-3.0-or-later
pragma circom 2.0.0;

// value is one of set[N]: prod (value - set[i]) == 0. Unused slots can repeat a member.
template SetMembership(N) {
    signal input value;
    signal input set[N];

    signal acc[N + 1];
    acc[0] <== 1;
    for (var i = 0; i < N; i++) {
        acc[i + 1] <== acc[i] * (value - set[i]);
    }
    acc[N] === 0;
}
