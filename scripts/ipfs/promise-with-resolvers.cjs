// Promise.withResolvers (ES2024) for Node 20: some js-ipfs 0.66.1 dependencies call it.
// Loaded into every daemon with NODE_OPTIONS=--require by scripts/ipfs.sh.
if (typeof Promise.withResolvers !== "function") {
  Promise.withResolvers = function withResolvers() {
    let resolve;
    let reject;
    const promise = new this((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}
