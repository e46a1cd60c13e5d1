// SPDX-License-Identifier: GPL-3.0-or-later
pragma circom 2.0.0;

// Binds a public input that no other constraint uses (Semaphore's signalHash trick): without a
// constraint its verifier-key term is the identity and the proof would be malleable in it.
template SignalBinding() {
    signal input signalHash;
    signal squared;
    squared <== signalHash * signalHash;
}
