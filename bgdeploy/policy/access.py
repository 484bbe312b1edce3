"""Whether the deploy user could rewrite the policy: from `id` and `stat` output, so it is unit tested. Pure.

A policy that the deploy user can change bounds nothing: a spec that got any foothold as that user would
rewrite it. Refused when the user owns, or may write, the file or any directory on its path (a writable
directory lets the file be replaced; a sticky one, like /tmp, only by the owner of the entry). ACLs are not
read: an admin who grants write through an ACL has said what they want.
"""

from __future__ import annotations

import posixpath
import stat
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    path: str
    uid: int
    gid: int
    mode: int  # st_mode, file type bits included


STAT_FORMAT = "%u %g %f %n"  # GNU stat: owner uid, gid, raw mode in hex, name


def parse_stat(text: str) -> dict[str, Entry]:
    """Lines of `stat -c '%u %g %f %n' PATH...` by path (a name may contain spaces: it comes last)."""
    entries: dict[str, Entry] = {}
    for line in text.splitlines():
        parts = line.split(" ", 3)
        if len(parts) != 4:
            continue
        uid, gid, mode, name = parts
        try:
            entries[name] = Entry(name, int(uid), int(gid), int(mode, 16))
        except ValueError:
            continue
    return entries


def ancestors(path: str) -> list[str]:
    """The directories above an absolute path, nearest first, `/` last."""
    out: list[str] = []
    current = posixpath.dirname(path)
    while True:
        out.append(current)
        if current == "/":
            return out
        current = posixpath.dirname(current)


def paths_to_check(path: str, real: str) -> list[str]:
    """The file (by its real path) and every directory above it and above the name it was given by."""
    seen: list[str] = []
    for item in [real, *ancestors(real), *ancestors(path)]:
        if item not in seen:
            seen.append(item)
    return seen


def _can_write(entry: Entry, uid: int, gids: set[int]) -> bool:
    if uid == 0 or entry.uid == uid:  # root writes anything; an owner can always chmod
        return True
    if entry.gid in gids:
        return bool(entry.mode & stat.S_IWGRP)
    return bool(entry.mode & stat.S_IWOTH)


def write_risks(path: str, real: str, entries: dict[str, Entry], uid: int, gids: set[int]) -> list[str]:
    """Why the deploy user (uid, gids) could change the policy; [] when it cannot."""
    if uid == 0:
        return ["the deploy user is root, who can rewrite any file; deploy as a user in the docker group instead"]
    risks: list[str] = []
    missing = [p for p in paths_to_check(path, real) if p not in entries]
    if missing:
        return [f"could not stat {', '.join(missing)}"]
    file_entry = entries[real]
    if not stat.S_ISREG(file_entry.mode):
        risks.append(f"{real} is not a regular file")
    elif _can_write(file_entry, uid, gids):
        risks.append(f"the deploy user can write {real} ({_describe(file_entry)})")
    chains = [(real, ancestors(real)), (path, ancestors(path))]
    for leaf, dirs in chains:
        child = leaf
        for directory in dirs:
            entry = entries[directory]
            child_entry = entries.get(child)
            sticky = bool(entry.mode & stat.S_ISVTX)
            owns_child = child_entry is None or child_entry.uid == uid
            protected = sticky and not owns_child and entry.uid != uid
            if _can_write(entry, uid, gids) and not protected:
                risk = f"the deploy user can replace entries in {directory} ({_describe(entry)})"
                if risk not in risks:
                    risks.append(risk)
            child = directory
    return risks


def _describe(entry: Entry) -> str:
    return f"owner uid {entry.uid}, group gid {entry.gid}, mode {stat.S_IMODE(entry.mode):04o}"
