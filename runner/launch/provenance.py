"""What is needed to reproduce a run: code version, local changes, packages, host.

Collected once per ``sheetrun run`` into a folder, then hard-linked into each
run folder's ``provenance/`` (copied where links are impossible), so 200 rows
cost one ``git diff``, not 200. A project that is not a git repository still
runs; its provenance says so.
"""
from __future__ import annotations

import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from importlib import metadata

UNTRACKED_FILE_MAX = 1 << 20        # untracked files larger than this are listed, not archived
UNTRACKED_TOTAL_MAX = 32 << 20


def _git(root: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", root, *args], capture_output=True, timeout=60)


def collect(root: str, dest: str, exclude_dirs: tuple[str, ...] = (),
            exclude_files: tuple[str, ...] = ()) -> str:
    """Write provenance files for ``root`` into ``dest``; returns ``dest``.

    ``exclude_files`` (the sheet being run: results, not code) and ``exclude_dirs``
    (the run folders) are left out of ``git.diff`` and the untracked archive, and
    so are sheetrun's own ``.sheetrun/`` folders (lock and temporary files).
    """
    os.makedirs(dest, exist_ok=True)
    info: dict = {"collected": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "project_root": root}
    try:
        head = _git(root, "rev-parse", "HEAD")
        is_repo = _git(root, "rev-parse", "--is-inside-work-tree").returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        head, is_repo = None, False
    if is_repo:
        info["git_commit"] = head.stdout.decode().strip() if head.returncode == 0 else None
        branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD")
        info["git_branch"] = branch.stdout.decode().strip() if branch.returncode == 0 else None
        skip = [os.path.relpath(f, root) for f in exclude_files
                if not os.path.relpath(f, root).startswith("..")]
        pathspec = ["--", "."] + [f":(exclude){f}" for f in skip] + [":(exclude)**/.sheetrun/**"]
        diff = (_git(root, "diff", "HEAD", "--binary", *pathspec) if info["git_commit"]
                else _git(root, "diff", "--binary", *pathspec))
        with open(os.path.join(dest, "git.diff"), "wb") as f:
            f.write(diff.stdout)
        info["git_dirty"] = bool(diff.stdout)
        info["left_out"] = skip
        listed = _git(root, "ls-files", "--others", "--exclude-standard", "-z").stdout.decode()
        excluded = tuple(os.path.relpath(d, root) + os.sep for d in exclude_dirs)
        untracked = [p for p in listed.split("\0") if p and not p.startswith(excluded) and p not in skip
                     and ".sheetrun" not in p.split("/")]
        info["untracked_files"] = len(untracked)
        _archive_untracked(root, untracked, dest)
    else:
        info["git_commit"] = None
        info["note"] = "project is not a git repository"
    with open(os.path.join(dest, "git.json"), "w") as f:
        json.dump(info, f, indent=1)
    packages = sorted(installed_packages(), key=str.lower)
    with open(os.path.join(dest, "pip_freeze.txt"), "w") as f:
        f.write("\n".join(packages) + "\n")
    with open(os.path.join(dest, "host.json"), "w") as f:
        json.dump({"hostname": socket.gethostname(), "platform": platform.platform(),
                   "python": sys.version, "executable": sys.executable,
                   "cpu_count": os.cpu_count()}, f, indent=1)
    return dest


def installed_packages() -> set[str]:
    """``name==version`` of every installed distribution, as ``pip freeze`` lists them.

    Read from the ``*.dist-info`` folder names where possible: parsing every
    package's metadata costs a third of a second per run.
    """
    out = set()
    for dist in metadata.distributions():
        folder = os.path.basename(str(getattr(dist, "_path", "")))
        m = re.fullmatch(r"(.+?)-([^-]+)\.(?:dist|egg)-info", folder)
        if m:
            out.add(f"{m.group(1)}=={m.group(2)}")
        elif dist.metadata["Name"]:
            out.add(f"{dist.metadata['Name']}=={dist.version}")
    return out


def is_secret(path: str) -> bool:
    """Credentials never go into a run folder: the Google key in use, or any file that
    holds a private key (service-account JSON, PEM)."""
    cred = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if cred and os.path.exists(cred) and os.path.samefile(cred, path):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(UNTRACKED_FILE_MAX)
    except OSError:
        return False
    return b'"private_key"' in head or b"PRIVATE KEY-----" in head


def _archive_untracked(root: str, paths: list[str], dest: str) -> None:
    listing, total = [], 0
    with tarfile.open(os.path.join(dest, "untracked.tar.gz"), "w:gz") as tar:
        for rel in paths:
            full = os.path.join(root, rel)
            try:
                size = os.path.getsize(full)
            except OSError:
                continue
            if is_secret(full):
                listing.append(f"not archived (credentials)\t{size}\t{rel}")
                continue
            archived = size <= UNTRACKED_FILE_MAX and total + size <= UNTRACKED_TOTAL_MAX
            if archived:
                tar.add(full, arcname=rel)
                total += size
            listing.append(f"{'archived' if archived else 'too large'}\t{size}\t{rel}")
    with open(os.path.join(dest, "untracked.txt"), "w") as f:
        f.write("\n".join(listing) + ("\n" if listing else ""))


def link_into(src_dir: str, dest_dir: str) -> None:
    """Give ``dest_dir`` the files of ``src_dir`` (hard links, else copies)."""
    os.makedirs(dest_dir, exist_ok=True)
    for name in os.listdir(src_dir):
        src, dst = os.path.join(src_dir, name), os.path.join(dest_dir, name)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
