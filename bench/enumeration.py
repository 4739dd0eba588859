"""Does POST /auth/password/forgot reveal which emails have an account by its timing?

Usage: python bench/enumeration.py http://127.0.0.1:8101 [--requests 200]

Registers one account, then sends interleaved forgot-password requests for that known
address and for fresh unknown addresses (N each), and prints the median latency of each
and their difference. Interleaving spreads drift (warm-up, background work) over both sides.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time

import httpx

PASSWORD = "bench passphrase for timing 42"


def _quantiles(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4)
    return f"median {statistics.median(values) * 1000:7.3f} ms  (IQR {q[0] * 1000:.3f}–{q[2] * 1000:.3f} ms)"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url", help="Base URL of a running authgate, e.g. http://127.0.0.1:8101")
    parser.add_argument("--requests", type=int, default=200, help="Requests per side (default 200)")
    args = parser.parse_args()
    base = args.url.rstrip("/")
    known_email = f"bench-known-{secrets.token_hex(4)}@example.com"
    with httpx.Client(base_url=base, timeout=30) as client:
        response = client.post("/api/v1/auth/register", json={"email": known_email, "password": PASSWORD})
        if response.status_code not in (201, 202):
            print(
                f"could not register the known account: {response.status_code} {response.text}",
                file=sys.stderr,
            )
            return 1
        for _ in range(10):  # warm up connections and code paths
            client.post("/api/v1/auth/password/forgot", json={"email": known_email})
            client.post(
                "/api/v1/auth/password/forgot", json={"email": f"warm-{secrets.token_hex(4)}@example.com"}
            )
        known: list[float] = []
        unknown: list[float] = []
        for i in range(args.requests * 2):
            is_known = i % 2 == 0
            email = known_email if is_known else f"nobody-{secrets.token_hex(6)}@example.com"
            started = time.perf_counter()
            response = client.post("/api/v1/auth/password/forgot", json={"email": email})
            elapsed = time.perf_counter() - started
            if response.status_code != 202:
                print(f"unexpected answer {response.status_code}: {response.text}", file=sys.stderr)
                return 1
            (known if is_known else unknown).append(elapsed)
    difference = statistics.median(known) - statistics.median(unknown)
    print(f"known   ({len(known)}): {_quantiles(known)}")
    print(f"unknown ({len(unknown)}): {_quantiles(unknown)}")
    print(f"median difference (known - unknown): {difference * 1000:+.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
