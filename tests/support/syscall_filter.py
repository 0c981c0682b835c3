#!/usr/bin/python3
"""Runs a command under a systemd unit's system-call filter, as systemd installs it.

    syscall_filter.py '@system-service' '~@privileged @resources' -- command args...

Each argument before `--` is the value of one `SystemCallFilter=` line of the unit. Groups are
expanded with `systemd-analyze syscall-filter` (the same tables systemd uses); an allow list
first, then `~` lines take names out of it. Everything else fails with EPERM
(`SystemCallErrorNumber=EPERM`). Needs python3-seccomp.
"""
import errno
import os
import subprocess
import sys

import seccomp

_groups = {}


def expand(name):
    """The system calls of `name`: itself, or every member of a group, recursively."""
    if not name.startswith("@"):
        return {name}
    if name not in _groups:
        out = subprocess.run(["systemd-analyze", "syscall-filter", name],
                             check=True, capture_output=True, text=True).stdout
        members = set()
        for line in out.splitlines()[1:]:
            line = line.strip()
            if line and not line.startswith("#"):
                members |= expand(line)
        _groups[name] = members
    return _groups[name]


def main():
    split = sys.argv.index("--")
    lines, command = sys.argv[1:split], sys.argv[split + 1:]
    allowed = None
    for line in lines:
        deny = line.startswith("~")
        names = set()
        for item in line.lstrip("~").split():
            names |= expand(item)
        if deny:
            allowed = (allowed if allowed is not None else set()) - names
        else:
            allowed = (allowed or set()) | names
    f = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
    for name in sorted(allowed or ()):
        try:
            f.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError, OSError):
            pass  # not a system call of this architecture
    f.load()
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
