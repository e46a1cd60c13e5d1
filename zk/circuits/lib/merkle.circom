// SPDX-License-Identifier: GPL-3.0-or-later
pragma circom 2.0.0;

include "poseidon.circom";

// Root of a binary Poseidon Merkle tree (zk-kit InternalBinaryIMT layout): at level i the
// current node is the left child iff pathIndices[i] == 0. pathIndices are forced boolean so
// a prover cannot blend the two orderings.
template BinaryMerkleRoot(DEPTH) {
    signal input leaf;
    signal input pathElements[DEPTH];
    signal input pathIndices[DEPTH];
    signal output root;

    component hashers[DEPTH];
    signal nodes[DEPTH + 1];
    signal swap[DEPTH];
    nodes[0] <== leaf;

    for (var i = 0; i < DEPTH; i++) {
        pathIndices[i] * (1 - pathIndices[i]) === 0;
        // One multiplication per level: swap = idx * (sibling - node);
        // left = node + swap, right = sibling - swap.
        swap[i] <== pathIndices[i] * (pathElements[i] - nodes[i]);
        hashers[i] = Poseidon(2);
        hashers[i].inputs[0] <== nodes[i] + swap[i];
        hashers[i].inputs[1] <== pathElements[i] - swap[i];
        nodes[i + 1] <== hashers[i].out;
    }
    root <== nodes[DEPTH];
}
