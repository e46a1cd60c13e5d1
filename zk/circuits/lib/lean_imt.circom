// SPDX-License-Identifier: GPL-3.0-or-later
pragma circom 2.0.0;

include "bitify.circom";
include "multiplexer.circom";
include "poseidon.circom";

// Root of a zk-kit LeanIMT proof (as Semaphore v4's BinaryMerkleRoot): `depth` levels hash,
// bit i of `index` says whether the node is the right child at level i, siblings beyond
// `depth` are ignored. depth > MAX_DEPTH is unsatisfiable (circomlib's Decoder: out[i] = 1
// iff depth == i, and success === 1 needs depth in 0..MAX_DEPTH). One multiplication orders each
// pair: swap = bit * (sibling - node); (left, right) = (node + swap, sibling - swap).
template LeanIMTRoot(MAX_DEPTH) {
    signal input leaf;
    signal input depth;
    signal input index;
    signal input siblings[MAX_DEPTH];
    signal output root;

    component bits = Num2Bits(MAX_DEPTH);
    bits.in <== index;
    component atDepth = Decoder(MAX_DEPTH + 1);
    atDepth.inp <== depth;
    atDepth.success === 1;

    component hashers[MAX_DEPTH];
    signal nodes[MAX_DEPTH + 1];
    signal swap[MAX_DEPTH];
    signal picked[MAX_DEPTH + 1];
    nodes[0] <== leaf;
    var selected = 0;
    for (var i = 0; i < MAX_DEPTH; i++) {
        picked[i] <== atDepth.out[i] * nodes[i];
        selected += picked[i];
        swap[i] <== bits.out[i] * (siblings[i] - nodes[i]);
        hashers[i] = Poseidon(2);
        hashers[i].inputs[0] <== nodes[i] + swap[i];
        hashers[i].inputs[1] <== siblings[i] - swap[i];
        nodes[i + 1] <== hashers[i].out;
    }
    picked[MAX_DEPTH] <== atDepth.out[MAX_DEPTH] * nodes[MAX_DEPTH];
    root <== selected + picked[MAX_DEPTH];
}
