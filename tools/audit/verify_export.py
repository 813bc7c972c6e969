#!/usr/bin/env python3
"""Verifies a Caseledger audit export offline, with nothing but the Python standard library.

    python3 tools/audit/verify_export.py EXPORT.ndjson --public-key HEX

EXPORT.ndjson comes from `caseledger audit export --out FILE` or `GET /audit/export`; HEX is
the server's public key (`caseledger audit public-key`), obtained from a source you trust, not
from the export. The format and the exact bytes hashed and signed are in docs/audit.md.

Checks, in chain order: every event's seal is SHA-256(previous seal || record) with 32 zero bytes
before the first; chain numbers run 1, 2, 3, ... up to the header's chain_length; every
checkpoint in the log is signed (ed25519) by the trusted key over the documented message, and
the hash it signs equals the recomputed chain at its length. Prints OK and exits 0, or names the
first problem and exits 1.

ed25519 is not in the standard library, so verification is written out below from RFC 8032
(section 5.1.7); it is slow but only runs once per checkpoint.
"""

import argparse
import hashlib
import json
import sys

FORMAT = "caseledger-audit-export/1"
CHECKPOINT_EVENT = "ChainCheckpointSigned"
CHAIN_STREAM_TYPE = "audit_chain"
MESSAGE_PREFIX = "caseledger-chain-checkpoint/v1"

# --- ed25519 verification (RFC 8032), extended twisted Edwards coordinates -------------------
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _add(a, b):
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % P
    bb = (y1 + x1) * (y2 + x2) % P
    cc = 2 * t1 * t2 * D % P
    dd = 2 * z1 * z2 % P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(scalar, point):
    result = (0, 1, 1, 0)
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _equal(a, b):
    x1, y1, z1, _ = a
    x2, y2, z2, _ = b
    return (x1 * z2 - x2 * z1) % P == 0 and (y1 * z2 - y2 * z1) % P == 0


def _recover_x(y, sign):
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


def _decode_point(data):
    if len(data) != 32:
        return None
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % P)


_BY = 4 * pow(5, P - 2, P) % P
BASE = (_recover_x(_BY, 0), _BY, 1, _recover_x(_BY, 0) * _BY % P)


def ed25519_verify(public_key, message, signature):
    if len(signature) != 64:
        return False
    a = _decode_point(public_key)
    r = _decode_point(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= L:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little") % L
    return _equal(_mul(s, BASE), _add(r, _mul(h, a)))


# --- the export ----------------------------------------------------------------------------------
def checkpoint_message(c):
    return "\n".join(
        [MESSAGE_PREFIX, str(c["seq"]), str(c["transaction_id"]), str(c["position"]),
         c["chain_hash"], c["signed_at"]]
    ).encode()


def verify(lines, trusted_key_hex):
    """Returns (ok, text)."""
    try:
        header = json.loads(next(lines))
    except (StopIteration, ValueError):
        return False, "the export has no header line"
    if header.get("format") != FORMAT:
        return False, f"unknown format {header.get('format')!r} (expected {FORMAT})"
    trusted = bytes.fromhex(trusted_key_hex)
    previous = bytes(32)
    hashes = {}
    checkpoints = 0
    expected = 1
    for number, line in enumerate(lines, start=2):
        if not line.strip():
            continue
        entry = json.loads(line)
        seq, record = entry["seq"], entry["record"]
        if seq != expected:
            return False, f"line {number}: chain number {seq}, expected {expected}: events are missing or reordered"
        digest = hashlib.sha256(previous + record.encode("utf-8")).digest()
        if digest.hex() != entry["hash"]:
            return False, f"line {number}: event {seq} does not hash to its seal: the record or an earlier one was changed"
        event = json.loads(record)
        if event.get("event_type") == CHECKPOINT_EVENT and event.get("stream_type") == CHAIN_STREAM_TYPE:
            c = event["payload"]
            try:
                key = bytes.fromhex(c["public_key"])
                signature = bytes.fromhex(c["signature"])
            except (KeyError, ValueError):
                return False, f"line {number}: checkpoint without a readable key or signature"
            if key != trusted:
                return False, f"line {number}: checkpoint signed by {c['public_key']}, not the trusted key"
            if not ed25519_verify(key, checkpoint_message(c), signature):
                return False, f"line {number}: checkpoint signature does not verify"
            signed = hashes.get(c["seq"])
            if signed is None or signed != c["chain_hash"]:
                return False, f"line {number}: checkpoint signs chain hash {c['chain_hash']} at length {c['seq']}, the export has {signed}"
            checkpoints += 1
        hashes[seq] = digest.hex()
        previous = digest
        expected += 1
    if expected - 1 != header.get("chain_length"):
        return False, f"the export holds {expected - 1} events, its header says {header.get('chain_length')}"
    if checkpoints == 0:
        return False, "no signed checkpoint: nothing ties the chain to the key (run `caseledger audit checkpoint` first)"
    return True, f"OK: {expected - 1} events, {checkpoints} signed checkpoints, chain hash {previous.hex()}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("export")
    parser.add_argument("--public-key", required=True, help="the trusted ed25519 public key, hex")
    args = parser.parse_args()
    with open(args.export, encoding="utf-8") as f:
        ok, text = verify(iter(f), args.public_key)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
