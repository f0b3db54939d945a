"""Counting this process's open TCP connections to a port, from ``/proc`` (Linux only)."""

from __future__ import annotations

import os
from pathlib import Path

_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
TCP_STATES = {
    "01": "ESTABLISHED",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "08": "CLOSE_WAIT",
}


def proc_available() -> bool:
    return Path("/proc/self/fd").is_dir() and _TABLES[0].exists()


def _socket_inodes() -> set[str]:
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed between listing and reading
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def client_sockets_to(port: int) -> list[str]:
    """States of the sockets this process holds open whose remote end is ``port`` on this host."""
    inodes = _socket_inodes()
    states = []
    for table in _TABLES:
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[9] in inodes:
                states.append(TCP_STATES.get(fields[3], fields[3]))
    return states
