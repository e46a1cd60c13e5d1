// Small Node helpers for scripts/ipfs.sh (Node is the one runtime the script may assume;
// curl, jq or Python are not on every fresh machine).
//
//   node helper.cjs configure <repo config file> <api port> <swarm port>
//       Make a js-ipfs repo private and loopback-only. Edits the JSON directly because
//       each `jsipfs config` call boots a whole node (~2 s). Never prints the config: it
//       holds the node's private key.
//   node helper.cjs rpc <api base url> <command, e.g. "id" or "swarm/connect?arg=...">
//       POST to /api/v0/<command>, print the body; exit 1 on a connection error or non-2xx.
//   node helper.cjs peer-id <api base url | repo config file>
//       Print the peer ID of the daemon answering at the URL, or the one a repo's config
//       holds (a daemon of ours answers with the ID of its repo, a stranger on the port not).
//   node helper.cjs free-ports <n>
//       Print n TCP ports that are free on 127.0.0.1 right now.
"use strict";
const fs = require("node:fs");
const net = require("node:net");

function configure(file, apiPort, swarmPort) {
  const config = JSON.parse(fs.readFileSync(file, "utf8"));
  config.Addresses = {
    ...config.Addresses,
    API: `/ip4/127.0.0.1/tcp/${apiPort}`,
    Swarm: [`/ip4/127.0.0.1/tcp/${swarmPort}`],
    Gateway: "/ip4/127.0.0.1/tcp/0",
    RPC: "/ip4/127.0.0.1/tcp/0",
    Announce: [],
    Delegates: [],
  };
  config.Bootstrap = [];
  config.Discovery = {
    ...config.Discovery,
    MDNS: { Enabled: false, Interval: 10 },
    webRTCStar: { Enabled: false },
  };
  config.Routing = { Type: "none" };
  fs.writeFileSync(`${file}.tmp`, JSON.stringify(config, null, 2), { mode: 0o600 });
  fs.renameSync(`${file}.tmp`, file);
}

async function call(base, command) {
  const url = `${base.replace(/\/$/, "")}/api/v0/${command}`;
  try {
    const res = await fetch(url, { method: "POST", signal: AbortSignal.timeout(5000) });
    const body = await res.text();
    if (!res.ok) {
      console.error(`${command.split("?")[0]}: HTTP ${res.status} ${body.slice(0, 200)}`);
      process.exit(1);
    }
    return body;
  } catch (err) {
    console.error(`${command.split("?")[0]}: ${err.cause?.code ?? err.message}`);
    process.exit(1);
  }
}

async function rpc(base, command) {
  process.stdout.write(await call(base, command));
}

async function peerId(target) {
  if (/^https?:/.test(target)) {
    console.log(JSON.parse(await call(target, "id")).ID);
  } else {
    console.log(JSON.parse(fs.readFileSync(target, "utf8")).Identity.PeerID);
  }
}

async function freePorts(n) {
  // Hold every socket open until all are bound so the n ports are distinct.
  const servers = [];
  for (let i = 0; i < n; i++) {
    const server = net.createServer();
    await new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", resolve);
    });
    servers.push(server);
  }
  console.log(servers.map((s) => s.address().port).join(" "));
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
}

const [command, ...args] = process.argv.slice(2);
if (command === "configure" && args.length === 3) {
  configure(...args);
} else if (command === "rpc" && args.length === 2) {
  rpc(...args);
} else if (command === "peer-id" && args.length === 1) {
  peerId(...args);
} else if (command === "free-ports" && args.length === 1) {
  freePorts(Number(args[0]));
} else {
  console.error("usage: helper.cjs configure | rpc | peer-id | free-ports (see the header)");
  process.exit(2);
}
