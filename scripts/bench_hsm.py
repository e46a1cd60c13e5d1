"""Key-store benchmark: ``python scripts/bench_hsm.py [--n 2000]``.

Prints ops/s for wrap, unwrap and sign with the software store and with the PKCS#11 store on
a throw-away SoftHSM2 token, and AES-256-GCM over 4 KiB records host-side (cryptography)
against in-token (CKM_AES_GCM): that decides where records are encrypted. Needs SoftHSM2
(``bash scripts/softhsm.sh install``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402
from pkcs11 import Attribute, KeyType, Mechanism  # noqa: E402
from pkcs11.mechanisms import GCMParams  # noqa: E402

from hsm.abc import KeyStoreAPI  # noqa: E402
from hsm.envelope import seal_many  # noqa: E402
from hsm.pkcs11 import DEFAULT_MODULE, Pkcs11KeyStore  # noqa: E402
from hsm.software import SoftwareKeyStore  # noqa: E402

TOKEN = "emr-bench"
PIN = os.urandom(8).hex()


def rate(n: int, run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return n / (time.perf_counter() - start)


def key_ops(store: KeyStoreAPI, n: int) -> dict[str, float]:
    data_keys = [os.urandom(32) for _ in range(n)]
    wrapped = store.wrap_many(data_keys)
    signer = store.signer()
    digests = [os.urandom(32) for _ in range(max(n // 4, 1))]
    return {
        "wrap (wrap_many)": rate(n, lambda: store.wrap_many(data_keys)),
        "unwrap": rate(n, lambda: [store.unwrap(w) for w in wrapped]),
        "sign (ECDSA + recovery)": rate(
            len(digests), lambda: [signer.sign_digest(d) for d in digests]
        ),
    }


def gcm_ops(store: Pkcs11KeyStore, n: int, size: int) -> dict[str, float]:
    records = [(os.urandom(size), os.urandom(16)) for _ in range(n)]
    nonce = os.urandom(12)
    host_key = AESGCM(os.urandom(32))
    session = store._session
    token_key = session.generate_key(
        KeyType.AES, 256, store=False, template={Attribute.SENSITIVE: True}
    )

    def in_token_records() -> None:
        # What in-token record encryption costs per record: a fresh data key in the token,
        # GCM there, then the data key wrapped out for the index.
        for plaintext, aad in records:
            key = session.generate_key(
                KeyType.AES, 256, store=False, template={Attribute.EXTRACTABLE: True}
            )
            key.encrypt(
                plaintext, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, aad)
            )
            store._keks[store.current_kek_version].wrap_key(
                key, mechanism=Mechanism.AES_KEY_WRAP_PAD
            )
            key.destroy()

    result = {
        f"AES-GCM {size} B, host (cryptography)": rate(
            n, lambda: [host_key.encrypt(nonce, p, a) for p, a in records]
        ),
        f"AES-GCM {size} B, in token (CKM_AES_GCM)": rate(
            n,
            lambda: [
                token_key.encrypt(
                    p, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, a)
                )
                for p, a in records
            ],
        ),
        f"seal {size} B record, host GCM + token wrap": rate(n, lambda: seal_many(records, store)),
        f"seal {size} B record, all in token": rate(n, in_token_records),
    }
    token_key.destroy()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--size", type=int, default=4096)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        env = {**os.environ, "EMR_HSM_SO_PIN": os.urandom(8).hex(), "EMR_HSM_PIN": PIN}
        subprocess.run(
            ["bash", str(ROOT / "scripts/softhsm.sh"), "init", str(directory), TOKEN],
            env=env,
            check=True,
            capture_output=True,
        )
        os.environ["SOFTHSM2_CONF"] = str(directory / "softhsm2.conf")
        software = SoftwareKeyStore.create(directory / "keystore.json", "bench", scrypt_n=2**10)
        token = Pkcs11KeyStore.open(DEFAULT_MODULE, TOKEN, PIN)
        try:
            soft, hsm = key_ops(software, args.n), key_ops(token, args.n)
            print(f"{'operation':<26} {'software ops/s':>15} {'SoftHSM2 ops/s':>15} {'ratio':>7}")
            for name in soft:
                ratio = soft[name] / hsm[name]
                print(f"{name:<26} {soft[name]:>15,.0f} {hsm[name]:>15,.0f} {ratio:>6.1f}x")
            print()
            print(f"{'record encryption':<44} {'ops/s':>10}")
            for name, value in gcm_ops(token, args.n, args.size).items():
                print(f"{name:<44} {value:>10,.0f}")
        finally:
            software.close()
            token.close()


if __name__ == "__main__":
    main()
