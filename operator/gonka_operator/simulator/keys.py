"""`inferenced keys show|add` of the api image, stood in (the real-node role image's `inferenced`).

The warm-key Job (builders/onboarding.py) runs exactly what upstream's join docs do, in the api
image: `inferenced keys show "$KEY_NAME" --keyring-backend file -a` first, `keys add` only when that
finds nothing. This follows the Cosmos SDK's `keys` commands over the `file` keyring backend
(cosmos-sdk client/keys show.go, add.go; crypto/keyring/keyring.go `newRealPrompt`):

* the keyring is `<home>/keyring-file/`, home `--home` or `$HOME/.inference` (the api image runs as
  root: `/root/.inference`, the volume the node pod shares); a key is `<name>.info` plus
  `<hex address>.address`; `keyhash` holds a hash of the keyring passphrase;
* the passphrase is read from stdin: twice for a new keyring ("Enter keyring passphrase (attempt
  1/3):", "Re-enter keyring passphrase:"; different → "passphrases don't match"), once otherwise
  (wrong three times → "too many failed passphrase attempts"); prompts go to stderr;
* `show` of an unknown name: `Error: <name>.info: key not found`, exit 1; `-a` prints the bech32
  address only;
* `add` of an existing name asks "override the existing name <name> [y/N]:" and stops unless "y";
  a new key prints its info on stdout and the mnemonic on stderr ("**Important** write this
  mnemonic phrase in a safe place.").

What it does not do: real secp256k1 keys and an encrypted keyring (a made-up public key from random
bytes, the address derived from it as the SDK does: ripemd160(sha256(pubkey)), bech32 "gonka").
The passphrase is never stored or printed (only a salted hash, as upstream's bcrypt `keyhash`).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import sys
from pathlib import Path

from gonka_operator.simulator.network import address_of

WORDS = ("abandon", "ability", "able", "about", "above", "absent", "absorb", "abstract", "absurd", "abuse",
         "access", "accident", "account", "accuse", "achieve", "acid", "acoustic", "acquire", "across", "act")


class KeysError(Exception):
    pass


def _prompt(text: str) -> str:
    sys.stderr.write(text)
    sys.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        raise KeysError("EOF")
    return line.rstrip("\n")


def _hash(salt: bytes, passphrase: str) -> str:
    return base64.b64encode(salt + hashlib.sha256(salt + passphrase.encode()).digest()).decode()


def unlock(keyring: Path) -> None:
    """The passphrase prompt of the file backend (a new keyring: set it, twice)."""
    keyhash = keyring / "keyhash"
    if not keyhash.exists():
        first = _prompt("Enter keyring passphrase (attempt 1/3):\n")
        if _prompt("Re-enter keyring passphrase:\n") != first:
            raise KeysError("passphrases don't match")
        keyring.mkdir(parents=True, exist_ok=True, mode=0o700)
        keyhash.write_text(_hash(secrets.token_bytes(16), first))
        return
    stored = base64.b64decode(keyhash.read_text())
    for attempt in range(1, 4):
        if _hash(stored[:16], _prompt(f"Enter keyring passphrase (attempt {attempt}/3):\n")) == keyhash.read_text():
            return
        sys.stderr.write("incorrect passphrase\n")
    raise KeysError("too many failed passphrase attempts")


def show(keyring: Path, name: str, address_only: bool) -> str:
    info = keyring / f"{name}.info"
    if keyring.exists():
        unlock(keyring)
    if not info.exists():
        raise KeysError(f"{name}.info: key not found")
    key = json.loads(info.read_text())
    return str(key["address"]) if address_only else show_info(key)


def add(keyring: Path, name: str) -> tuple[str, str]:
    unlock(keyring)
    info = keyring / f"{name}.info"
    if info.exists() and _prompt(f"override the existing name {name} [y/N]: ").strip().lower() != "y":
        raise KeysError("aborted")
    pubkey = b"\x02" + secrets.token_bytes(32)
    address, raw = address_of(pubkey)
    key = {"name": name, "address": address, "pubkey": base64.b64encode(pubkey).decode(), "type": "local"}
    info.write_text(json.dumps(key))
    (keyring / f"{raw.hex()}.address").write_text(name)
    mnemonic = " ".join(secrets.choice(WORDS) for _ in range(24))
    return show_info(key), mnemonic


def show_info(key: dict[str, str]) -> str:
    return f"- address: {key['address']}\n  name: {key['name']}\n  pubkey: '{key['pubkey']}'\n  type: local\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inferenced", description=__doc__.split("\n")[0])
    parser.add_argument("group", choices=["keys"])
    parser.add_argument("command", choices=["show", "add"])
    parser.add_argument("name")
    parser.add_argument("--keyring-backend", default="file", choices=["file"])
    parser.add_argument("--home", default=str(Path(os.environ.get("HOME") or "/root") / ".inference"))
    parser.add_argument("-a", "--address", action="store_true")
    args = parser.parse_args(argv)
    keyring = Path(args.home) / "keyring-file"
    try:
        if args.command == "show":
            print(show(keyring, args.name, args.address))
        else:
            info, mnemonic = add(keyring, args.name)
            print(info)
            sys.stderr.write("\n**Important** write this mnemonic phrase in a safe place.\n"
                             "It is the only way to recover your account if you ever forget your password.\n\n"
                             f"{mnemonic}\n")
    except KeysError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
