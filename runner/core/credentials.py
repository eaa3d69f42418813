"""sheetrun's own credentials: kept from every job, and never written into a sheet.

sheetrun reaches a Google Sheet with an access token (``SHEETRUN_SHEETS_TOKEN``)
or a service-account key (``GOOGLE_APPLICATION_CREDENTIALS``, or gspread's
default file). A job's command never sees those variables
(:func:`job_environment`), a sheet cell cannot ask for them (``$VAR`` in
``cmd_env_var:``, ``<$VAR>`` in a path: :func:`refuse_credential`), and a value
about to be written into a cell that holds or is part of one of them is
replaced by a note (:func:`redact`) — whatever route it took.
"""
from __future__ import annotations

import json
import os
import time

from runner.core.errors import RowError

VARIABLES = ("SHEETRUN_SHEETS_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS")
DEFAULT_KEY_FILE = os.path.join("~", ".config", "gspread", "service_account.json")
REDACTED = "[withheld: matches sheetrun's Google credentials]"
MIN_SECRET_CHARS = 8         # shorter values are not looked for (they would match ordinary text)
MIN_PART_CHARS = 20          # a cell this long that is a piece of a secret (a line of a key) is withheld
RECHECK_S = 5.0              # how often the key file is looked at again (a row write must stay cheap)

_cache: dict = {}


class CredentialError(RowError):
    """A sheet asked for one of sheetrun's credentials."""


def is_credential(name: str) -> bool:
    return name in VARIABLES


def refuse_credential(name: str, where: str) -> None:
    if is_credential(name):
        raise CredentialError(f"{where}: ${name} is sheetrun's own credential and is never given to a row")


def job_environment(env: dict) -> dict:
    """``env`` without sheetrun's credentials: what a job's command is started with."""
    return {k: v for k, v in env.items() if k not in VARIABLES}


def _key_file() -> str:
    path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS") or os.path.expanduser(DEFAULT_KEY_FILE)
    return path if os.path.isfile(path) else ""


def secrets() -> tuple[str, ...]:
    """The secret texts of this process's credentials: the token, the key file's private key and its id."""
    token = os.environ.get("SHEETRUN_SHEETS_TOKEN", "")
    named = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS", "")
    now = time.monotonic()
    if _cache.get("env") == (token, named) and now - _cache.get("at", 0.0) < RECHECK_S:
        return _cache["secrets"]
    key_file = _key_file()
    stamp = (token, key_file, _mtime(key_file))
    _cache.update(env=(token, named), at=now)
    if _cache.get("stamp") != stamp:
        found = [token]
        if key_file:
            try:
                with open(key_file, encoding="utf-8") as f:
                    data = json.load(f)
                if isinstance(data, dict):
                    found += [str(data.get(k) or "") for k in ("private_key", "private_key_id", "refresh_token",
                                                                "client_secret")]
            except (OSError, ValueError):
                pass
        _cache.update(stamp=stamp, secrets=tuple(s for s in found if len(s.strip()) >= MIN_SECRET_CHARS))
    return _cache["secrets"]


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime if path else 0.0
    except OSError:
        return 0.0


def leaks(text: str) -> bool:
    """Does ``text`` hold a credential, or is it a long enough piece of one (a line of a key)?"""
    if len(text) < MIN_SECRET_CHARS:
        return False
    found = secrets()
    if not found:
        return False
    part = text.strip()
    return any(s in text or (len(part) >= MIN_PART_CHARS and part in s) for s in found)


def redact(text: str) -> str:
    """``text``, or :data:`REDACTED` where it would put a credential into a sheet."""
    return REDACTED if leaks(text) else text
