#!/usr/bin/env python3
"""Independent DATA_V2 known-answer vectors, built with the `cryptography` package.

Used by tests/kat.rs; it checks ovpn-core against this script in both directions:

  kat.py generate   prints one vector per line: fields separated by spaces, byte
                    strings in hex, every cipher and key length, fixed inputs.
  kat.py open       reads lines "cipher key nonce_tail packet" (hex) on stdin,
                    decrypts each packet with its key and prints
                    "ok <peer_id> <key_id> <packet_id> <plaintext hex>", or
                    "fail" when the tag does not verify.

Vector line: cipher key_hex nonce_tail_hex key_id peer_id packet_id
plaintext_hex packet_hex. The layout follows kernel-behaviour.md section 4.1:
opcode 9 and key id in byte 0, 24-bit peer id, 32-bit packet id, 16-byte tag,
ciphertext; AAD = bytes 0..8, nonce = packet id || nonce tail.

Exit status 3 means the `cryptography` package is missing.
"""

import struct
import sys

try:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
except ImportError:
    sys.stderr.write("kat.py: the python package 'cryptography' is not installed\n")
    sys.exit(3)

OPCODE_DATA_V2 = 9
TAG_LEN = 16
HEADER_LEN = 24
KEEPALIVE = bytes.fromhex("2a187bf3641eb4cb07ed2d0a981fc748")


def aead(cipher, key):
    if cipher == "aes-gcm":
        return AESGCM(key)
    if cipher == "chacha20-poly1305":
        return ChaCha20Poly1305(key)
    raise ValueError(f"unknown cipher {cipher}")


def header(key_id, peer_id, packet_id):
    first_word = (OPCODE_DATA_V2 << 27) | (key_id << 24) | peer_id
    return struct.pack(">II", first_word, packet_id)


def seal(cipher, key, nonce_tail, key_id, peer_id, packet_id, plaintext):
    aad = header(key_id, peer_id, packet_id)
    nonce = struct.pack(">I", packet_id) + nonce_tail
    sealed = aead(cipher, key).encrypt(nonce, plaintext, aad)
    ciphertext, tag = sealed[:-TAG_LEN], sealed[-TAG_LEN:]
    return aad + tag + ciphertext


def open_packet(cipher, key, nonce_tail, packet):
    if len(packet) < HEADER_LEN:
        return None
    aad, tag, ciphertext = packet[:8], packet[8:HEADER_LEN], packet[HEADER_LEN:]
    first_word, packet_id = struct.unpack(">II", aad)
    nonce = struct.pack(">I", packet_id) + nonce_tail
    try:
        plaintext = aead(cipher, key).decrypt(nonce, ciphertext + tag, aad)
    except Exception:  # cryptography raises InvalidTag
        return None
    return first_word & 0xFFFFFF, (first_word >> 24) & 7, packet_id, plaintext


def pattern(length, seed):
    """Deterministic filler bytes, different for every seed."""
    return bytes((seed * 31 + i * 7 + (i >> 8)) & 0xFF for i in range(length))


# Fixed inputs: (cipher, key length, key id, peer id, packet id, plaintext).
IPV4_PING = bytes.fromhex(
    "4500001c000140004001f8c1c612000ac612000b"  # 198.18.0.10 -> 198.18.0.11
    "0800f7ff00000000"
)
CASES = [
    ("aes-gcm", 16, 0, 5, 1, IPV4_PING),
    ("aes-gcm", 16, 7, 0xFFFFFE, 0xFFFFFFFF, pattern(1, 1)),
    ("aes-gcm", 16, 3, 0, 2, b""),
    ("aes-gcm", 24, 1, 1, 1, KEEPALIVE),
    ("aes-gcm", 24, 2, 0x123456, 0x80000000, pattern(1420, 2)),
    ("aes-gcm", 32, 0, 1, 1, KEEPALIVE),
    ("aes-gcm", 32, 5, 0xABCDEF, 0x01020304, pattern(1420, 3)),
    ("aes-gcm", 32, 6, 0xFFFFFF, 0xFFFFFFFE, pattern(9000, 4)),
    ("aes-gcm", 32, 4, 77, 1000, pattern(17, 5)),
    ("chacha20-poly1305", 32, 0, 5, 1, IPV4_PING),
    ("chacha20-poly1305", 32, 1, 1, 1, KEEPALIVE),
    ("chacha20-poly1305", 32, 7, 0xFFFFFE, 0xFFFFFFFF, pattern(1420, 6)),
    ("chacha20-poly1305", 32, 2, 0, 65, pattern(64, 7)),
    ("chacha20-poly1305", 32, 3, 0x00FF00, 2, b""),
    ("chacha20-poly1305", 32, 6, 0x424242, 0xDEADBEEF, pattern(9000, 8)),
]


def generate():
    for index, (cipher, key_len, key_id, peer_id, packet_id, plaintext) in enumerate(CASES):
        key = pattern(key_len, 100 + index)
        nonce_tail = pattern(8, 200 + index)
        packet = seal(cipher, key, nonce_tail, key_id, peer_id, packet_id, plaintext)
        fields = [
            cipher,
            key.hex(),
            nonce_tail.hex(),
            str(key_id),
            str(peer_id),
            str(packet_id),
            plaintext.hex() or "-",
            packet.hex(),
        ]
        print(" ".join(fields))


def open_lines():
    for line in sys.stdin:
        if not line.strip():
            continue
        cipher, key, nonce_tail, packet = line.split()
        opened = open_packet(
            cipher, bytes.fromhex(key), bytes.fromhex(nonce_tail), bytes.fromhex(packet)
        )
        if opened is None:
            print("fail")
        else:
            peer_id, key_id, packet_id, plaintext = opened
            print(f"ok {peer_id} {key_id} {packet_id} {plaintext.hex() or '-'}")


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "generate":
        generate()
    elif mode == "open":
        open_lines()
    else:
        sys.stderr.write("usage: kat.py generate|open\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
