from eth_account import Account
from eth_account.messages import encode_defunct

from node.auth import siwe


def test_message_follows_eip4361_and_round_trips_the_nonce() -> None:
    acct = Account.create()
    nonce = siwe.new_nonce()
    msg = siwe.build_message(
        domain="node.example:8700",
        address=acct.address,
        uri="http://node.example:8700",
        chain_id=1337,
        nonce=nonce,
        issued_at=1_700_000_000,
        expires_at=1_700_000_300,
    )
    lines = msg.split("\n")
    assert lines[0] == "node.example:8700 wants you to sign in with your Ethereum account:"
    assert lines[1] == acct.address
    assert "Chain ID: 1337" in lines and "Version: 1" in lines
    assert "Issued At: 2023-11-14T22:13:20Z" in lines
    assert "Expiration Time: 2023-11-14T22:18:20Z" in lines
    assert siwe.nonce_of(msg) == nonce


def test_recover_signer() -> None:
    acct = Account.create()
    sig = acct.sign_message(encode_defunct(text="hello")).signature
    assert siwe.recover_signer("hello", sig) == acct.address
    assert siwe.recover_signer("hello!", sig) != acct.address
    assert siwe.recover_signer("hello", b"\x01" * 10) is None


def test_nonce_of_rejects_messages_without_one() -> None:
    assert siwe.nonce_of("no nonce here") is None
    assert siwe.nonce_of("Nonce: short") is None
