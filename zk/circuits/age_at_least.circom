// SPDX-License-Identifier: GPL-3.0-or-later
pragma circom 2.0.0;

include "poseidon.circom";
include "dates.circom";
include "signal.circom";

// The holder of the date of birth committed in dobCommitment was at least minAge years old on
// currentDate (dates as YYYYMMDD integers). Public inputs are declared in spec order.
template AgeAtLeast() {
    // Public, in this order.
    signal input dobCommitment;
    signal input currentDate;
    signal input minAge;
    signal input signalHash;
    // Private.
    signal input dateOfBirth;
    signal input salt;

    component commitment = Poseidon(2);
    commitment.inputs[0] <== dateOfBirth;
    commitment.inputs[1] <== salt;
    dobCommitment === commitment.out;

    component age = DateAtLeast();
    age.dateOfBirth <== dateOfBirth;
    age.currentDate <== currentDate;
    age.minAge <== minAge;

    component binding = SignalBinding();
    binding.signalHash <== signalHash;
}

component main {public [dobCommitment, currentDate, minAge, signalHash]} = AgeAtLeast();
