"""Upload throughput on the embedded default. Usage:
.venv/bin/python scripts/bench_upload.py [--records 5000] [--size 4096]
"""

import argparse
import json

from node.bench import bench_flow, bench_http

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--records", type=int, default=5000)
parser.add_argument("--size", type=int, default=4096)
parser.add_argument("--batch", type=int, default=500)
parser.add_argument("--concurrency", type=int, default=8)
args = parser.parse_args()
print(json.dumps({"flow": bench_flow(args.records, args.size, args.batch)}))
print(json.dumps({"http": bench_http(args.records, args.size, args.concurrency)}))
