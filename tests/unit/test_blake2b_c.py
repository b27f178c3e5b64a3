"""The front end's keyed BLAKE2b (shim/launcher/blake2b.c) against RFC 7693's vector and, for
keys, lengths and splits the RFC has no vector for, against Python's hashlib (the
implementation isorun.host.mac tags with on the Python side): the two must agree byte for
byte, or no index would ever be launched (or, worse, a wrong one accepted)."""

from __future__ import annotations

import hashlib
import random
import subprocess
from pathlib import Path

import pytest

import isorun
from isorun.shim import headers

SHIM = Path(isorun.__file__).parent / "shim"

#: reads lines "OUTLEN KEYHEX CHUNKS MSGHEX" (CHUNKS: update sizes, comma-separated, the
#: rest in one), prints the digest in hex per line
DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "launcher.h"

static size_t unhex(const char *s, unsigned char *out) {
    size_t n = 0;
    for (; s[0] && s[1] && s[0] != '-'; s += 2) {
        unsigned v;
        sscanf(s, "%2x", &v);
        out[n++] = (unsigned char)v;
    }
    return n;
}

int main(void) {
    static char line[1 << 22];
    static unsigned char key[64], msg[1 << 21];
    unsigned char out[64];
    char keyhex[200], chunks[200];
    size_t outlen;
    while (fgets(line, sizeof line, stdin)) {
        char *msghex = malloc(sizeof line);
        if (sscanf(line, "%zu %199s %199s %s", &outlen, keyhex, chunks, msghex) != 4)
            return 2;
        size_t keylen = unhex(keyhex, key), len = unhex(msghex, msg), at = 0;
        struct isorun_blake2b s;
        if (isorun_blake2b_init(&s, outlen, key, keylen) != 0)
            return 3;
        for (char *c = strtok(chunks, ","); c && c[0] != '-'; c = strtok(NULL, ",")) {
            size_t n = strtoul(c, NULL, 10);
            if (n > len - at)
                n = len - at;
            isorun_blake2b_update(&s, msg + at, n);
            at += n;
        }
        isorun_blake2b_update(&s, msg + at, len - at);
        isorun_blake2b_final(&s, out);
        for (size_t i = 0; i < outlen; i++)
            printf("%02x", out[i]);
        printf("\n");
        free(msghex);
    }
    return 0;
}
"""

#: RFC 7693, Appendix A: BLAKE2b-512("abc"), unkeyed
RFC_ABC = ("ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1"
           "7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923")


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import shutil

    if shutil.which("gcc") is None:
        from tests.integration.conftest import missing

        missing("gcc to build the BLAKE2b test driver")
    where = tmp_path_factory.mktemp("blake2b")
    (where / "driver.c").write_text(DRIVER)
    binary = where / "driver"
    headers.write(where)  # launcher.h reads the generated consts.h
    subprocess.run(["gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-Wconversion",
                    f"-I{where}", f"-I{SHIM}", f"-I{SHIM / 'launcher'}", "-o", str(binary),
                    str(where / "driver.c"), str(SHIM / "launcher" / "blake2b.c")],
                   check=True, timeout=60)
    return binary


def _run(driver: Path, cases: list[tuple[int, bytes, str, bytes]]) -> list[str]:
    lines = "".join(f"{n} {k.hex() or '-'} {c or '-'} {m.hex() or '-'}\n"
                    for n, k, c, m in cases)
    done = subprocess.run([str(driver)], input=lines, capture_output=True, text=True,
                          check=True, timeout=60)
    return done.stdout.split()


def test_rfc_7693_vector(driver: Path) -> None:
    assert _run(driver, [(64, b"", "", b"abc")]) == [RFC_ABC]
    assert hashlib.blake2b(b"abc").hexdigest() == RFC_ABC  # and the oracle below agrees


def test_keyed_digests_agree_with_hashlib(driver: Path) -> None:
    """Every block boundary the streaming code has (0, 127, 128, 129, 256 bytes, a launch
    index's size), keys of 0, 1, 32 and 64 bytes, 32- and 64-byte digests, and updates in
    odd pieces, as launch_index.c feeds the domain, the name and the body."""
    rng = random.Random(2104)
    cases = []
    for size in (0, 1, 3, 127, 128, 129, 255, 256, 257, 1000, 17_575, 33_300):
        for keylen in (0, 1, 32, 64):
            for outlen in (32, 64):
                msg = rng.randbytes(size)
                key = rng.randbytes(keylen)
                cut = ",".join(str(rng.choice((0, 1, 6, 64, 127, 128, 129, 500)))
                               for _ in range(rng.randrange(0, 5)))
                cases.append((outlen, key, cut, msg))
    got = _run(driver, cases)
    want = [hashlib.blake2b(m, key=k, digest_size=n).hexdigest() for n, k, _, m in cases]
    assert got == want


def test_the_tag_of_isorun_mac(driver: Path) -> None:
    """launch_index.c's tag: kind, NUL, name, NUL, body under the key (isorun.host.mac.tag)."""
    from isorun.host import mac

    key, name, body = bytes(range(32)), "0123456789abcdef.launch", b"body" * 1000
    got = _run(driver, [(32, key, "6,24", b"index\0" + name.encode() + b"\0" + body)])
    assert got == [mac.tag(key, b"index", name, body).hex()]
