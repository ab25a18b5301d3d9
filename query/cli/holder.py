"""Which API serves a store file that a running collector holds: what ``--db`` on a held file
suggests instead.

DuckDB names the process holding the file's lock (``StoreInUse.pid``). On Linux its listening
TCP sockets are in ``/proc``; the one whose ``/healthz`` answers like roomscope's query API is
the collector's API. Elsewhere, or when the process is another user's, the answer is None and
the message names the configured address as a guess, saying so.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

import httpx


def in_use_message(path: str, pid: int | None, configured: str, timeout: float) -> str:
    """One line: the file is held, and the ``--server`` URL to query it with."""
    held = f" (process {pid})" if pid else ""
    url = collector_api(pid, timeout) if pid else None
    if url is not None:
        return (
            f"store file {path} is in use by a running collector{held}; query it through its"
            f" API: --server {url}"
        )
    return (
        f"store file {path} is in use by a running collector{held}; query it through its API"
        f" with --server URL, the API address roomscope serve printed when it started"
        f" (the configured server.api_host and server.api_port give {configured})"
    )


def collector_api(pid: int, timeout: float) -> str | None:
    """The URL of the roomscope API that process ``pid`` listens on, if one answers."""
    for host, port in listening(pid):
        for scheme in ("http", "https"):
            url = f"{scheme}://{host}:{port}"
            if _is_api(url, timeout):
                return url
    return None


def _is_api(url: str, timeout: float) -> bool:
    try:
        # Only /healthz of a local process that holds the store: nothing to protect by
        # verifying a (likely self-signed) certificate.
        response = httpx.get(url + "/healthz", timeout=timeout, verify=False)
        return response.status_code == 200 and response.json() == {"status": "ok"}
    except (httpx.HTTPError, ValueError):
        return False


def listening(pid: int) -> list[tuple[str, int]]:
    """The (host, port) of every TCP socket process ``pid`` listens on, hosts as a client
    would dial them (a wildcard address as loopback); [] where /proc cannot tell."""
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        try:
            rows = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, port = fields[1].split(":")
                found.append((_host(address), int(port, 16)))
    return sorted(set(found), key=lambda hp: hp[1])


def _host(hex_address: str) -> str:
    """/proc/net/tcp's address (32-bit words in host byte order) → what to dial."""
    step = -1 if sys.byteorder == "little" else 1
    words = (hex_address[i : i + 8] for i in range(0, len(hex_address), 8))
    raw = b"".join(bytes.fromhex(word)[::step] for word in words)
    ip = ipaddress.ip_address(raw)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return "127.0.0.1" if ip.version == 4 else "[::1]"
    return str(ip) if ip.version == 4 else f"[{ip}]"
