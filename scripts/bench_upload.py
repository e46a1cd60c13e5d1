"""Upload throughput. Usage:
.venv/bin/python scripts/bench_upload.py [--records 5000] [--size 4096]
    embedded default: the upload flow in process, then HTTP against `emr-node run`
.venv/bin/python scripts/bench_upload.py --hsm [--records N]
    the same two measurements with the keys in a fresh SoftHSM2 token (PKCS#11)
.venv/bin/python scripts/bench_upload.py --production [--rpc-url URL] [--ipfs URL ...]
    HTTP against a production-mode node; start the services first:
    scripts/services.sh start; scripts/ipfs.sh start 2; scripts/chain.sh start
"""

import argparse
import json
import tempfile
from pathlib import Path

from node.bench import bench_flow, bench_http, production_env, softhsm_env

parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
)
parser.add_argument("--records", type=int, default=5000)
parser.add_argument("--size", type=int, default=4096)
parser.add_argument("--batch", type=int, default=500)
parser.add_argument("--concurrency", type=int, default=16)
parser.add_argument("--production", action="store_true")
parser.add_argument("--hsm", action="store_true", help="keys in a SoftHSM2 token")
parser.add_argument("--rpc-url", default="http://127.0.0.1:8545")
parser.add_argument("--ipfs", nargs="+", default=["http://127.0.0.1:5001", "http://127.0.0.1:5002"])
args = parser.parse_args()
if args.production:
    env = production_env(args.rpc_url, args.ipfs)
    print(
        json.dumps({"http_production": bench_http(args.records, args.size, args.concurrency, env)})
    )
elif args.hsm:
    with tempfile.TemporaryDirectory() as tmp:
        env = softhsm_env(Path(tmp))
        print(json.dumps({"flow_hsm": bench_flow(args.records, args.size, args.batch, env)}))
        print(json.dumps({"http_hsm": bench_http(args.records, args.size, args.concurrency, env)}))
else:
    print(json.dumps({"flow": bench_flow(args.records, args.size, args.batch)}))
    print(json.dumps({"http": bench_http(args.records, args.size, args.concurrency)}))
