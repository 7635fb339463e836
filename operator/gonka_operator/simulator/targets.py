"""Which hosts the stand-ins may contact (REFERENCE.md §5 of the issue: traffic stays on this machine).

Both stand-ins talk to addresses that come from outside (registered entries, callback URLs). Before
any connection the host is resolved and EVERY resolved address must be loopback or inside one of the
CIDRs given with `--allow-targets`; otherwise nothing is sent and the caller gets a reason it can
show (`failure_reason` of the entry). A name that does not resolve gets Go's wording
(`dial tcp: lookup <host>: no such host`), which is what the real api reports for it.

`--connect-to PATTERN=ADDR:PORT` (test harness only, like curl's `--connect-to`) sends every
connection for a host matching the glob PATTERN (optionally `PATTERN:PORT`) to ADDR:PORT instead;
the allow check then applies to ADDR. Tests use it to stand a loopback ML stand-in in for cluster
DNS names that do not resolve on the test machine.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TargetRefused(Exception):
    """The target was not contacted; `str()` is the reason to show."""


def parse_cidrs(values: Iterable[str]) -> list[Network]:
    """`["10.244.0.0/16", "10.96.0.0/12,127.0.0.1"]` → networks (comma-separated items allowed)."""
    out: list[Network] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if item:
                out.append(ipaddress.ip_network(item, strict=False))
    return out


@dataclass(frozen=True)
class ConnectTo:
    host_glob: str
    port: int | None
    to_host: str
    to_port: int

    @classmethod
    def parse(cls, spec: str) -> ConnectTo:
        """`"*.svc.cluster.local=127.0.0.1:18080"` or `"gpu7:8080=127.0.0.1:18080"`."""
        left, sep, right = spec.partition("=")
        to_host, _, to_port = right.rpartition(":")
        if not sep or not left or not to_host or not to_port.isdigit():
            raise ValueError(f"--connect-to wants PATTERN[:PORT]=ADDR:PORT, got {spec!r}")
        glob, port = left, None
        head, colon, tail = left.rpartition(":")
        if colon and tail.isdigit() and head:
            glob, port = head, int(tail)
        return cls(glob, port, to_host.strip("[]"), int(to_port))

    def matches(self, host: str, port: int) -> bool:
        return fnmatch.fnmatchcase(host, self.host_glob) and (self.port is None or self.port == port)


@dataclass
class TargetPolicy:
    """Loopback is always allowed; `networks` adds more; `connect_to` rewrites targets first."""

    networks: list[Network] = field(default_factory=list)
    connect_to: list[ConnectTo] = field(default_factory=list)

    def describe(self) -> str:
        return ", ".join(["loopback", *(str(n) for n in self.networks)])

    def route(self, host: str, port: int) -> tuple[str, int]:
        for rule in self.connect_to:
            if rule.matches(host, port):
                return rule.to_host, rule.to_port
        return host, port

    def allowed(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%")[0])
        if ip.is_loopback:
            return True
        return any(ip.version == n.version and ip in n for n in self.networks)

    async def check(self, host: str, port: int) -> tuple[str, int]:
        """Resolve and check; return the (host, port) to connect to or raise TargetRefused."""
        target, target_port = self.route(host, port)
        addresses = await resolve(target, target_port)
        refused = [a for a in addresses if not self.allowed(a)]
        if refused:
            shown = target if target == refused[0] else f"{target} ({refused[0]})"
            raise TargetRefused(
                f"not contacted: {shown} is outside the stand-in's --allow-targets ({self.describe()})"
            )
        return target, target_port


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to; TargetRefused in Go's words when it does not resolve."""
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"dial tcp: lookup {host}: no such host") from exc
    return sorted({str(info[4][0]) for info in infos})
