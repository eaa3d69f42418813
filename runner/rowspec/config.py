"""Default YAML configs and the per-row deltas applied to them."""
from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass
from typing import Any, Iterator

import yaml

from runner.core.cells import KEEP_DEFAULT
from runner.core.errors import RowError

_PLACEHOLDER = re.compile(r"<[^<>]*>")
SEPARATOR = "/"


class ConfigError(RowError):
    """A config cannot be loaded or a delta cannot be applied."""


def load_yaml(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"YAML error in {path}{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level, not {type(data).__name__}")
    return data


@dataclass(frozen=True)
class Delta:
    """One ``delta:`` cell: the key path it sets, the value, whether it may create the key
    (``delta+:``), and whether the cell was quoted (text meant as text)."""
    path: str
    value: Any
    create: bool = False
    quoted: bool = False


def apply_deltas(default: dict, deltas: list, warnings: list[str] | None = None) -> dict:
    """Return a copy of ``default`` with each :class:`Delta` (or ``(path, value, create[, quoted])``)
    applied.

    ``a/b/c`` addresses nested mappings (and list indices). An unknown key is an
    error with a did-you-mean hint unless ``create`` is set (``delta+:`` columns).
    A value of the wrong kind for its default (text for a number, a list for a
    single value...) is an error naming the key, the value and what was expected
    — except where the text is meant (:func:`meant_as_text`): then the value is
    taken and the problem goes to ``warnings``, as stnd takes any value.
    """
    config = copy.deepcopy(default)
    for delta in deltas:
        delta = delta if isinstance(delta, Delta) else Delta(*delta)
        path, value, create, quoted = delta.path, delta.value, delta.create, delta.quoted
        if value is KEEP_DEFAULT:
            continue        # a column may only concern rows whose config has that key
        parent, key = _locate(config, path, create=create)
        exists = key in parent if isinstance(parent, dict) else True
        if exists:
            problem = type_problem(path, parent[key], value)
            if problem:
                if warnings is None or not meant_as_text(path, parent[key], value, quoted):
                    raise ConfigError(problem)
                warnings.append(f"{problem}; it runs with the text, as stnd runs it"
                                + ("" if quoted else f" (quote it, '{value}', to say it is meant)"))
        parent[key] = value
    return config


# An integer whose key names a choice is a code: text may name the choice instead (stnd's own
# test sheet sets initialization_type, default 1, to 'zeros').
CODE_KEY = re.compile(r"(?:^|_)(?:type|mode|kind|method|style|variant|version|option|choice|scheme|strategy)s?$")
NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand "
    "million billion".split())


def meant_as_text(path: str, default: Any, value: Any, quoted: bool = False) -> bool:
    """Is text in place of a number meant? Yes when the cell is quoted (``'zeros'``: the sheet says
    so), or when the default is an integer used like a code (its key ends in ``type``, ``mode``,
    ``kind``, ``method``, ...) and the text is not a number mistyped (``0,1``, ``ten``, ``10k``)."""
    if not isinstance(value, str):
        return False
    if quoted:
        return True
    name = path.rsplit(SEPARATOR, 1)[-1].lower()
    mistyped = (re.fullmatch(r"\s*[+-]?[\d.,]+\s*[a-zA-Z%]*\s*", value) is not None
                or any(word in NUMBER_WORDS for word in re.split(r"[\s_-]+", value.strip().lower())))
    return (isinstance(default, int) and not isinstance(default, bool) and bool(CODE_KEY.search(name))
            and not mistyped)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


_EXPECTED = {"number": "a number", "boolean": "true or false", "text": "text",
             "list": "a list like [a b c]", "mapping": "a mapping (set its keys with delta:KEY/SUBKEY columns)"}


def type_problem(path: str, default: Any, value: Any) -> str | None:
    """Why ``value`` cannot replace ``default`` at ``path``, or None.

    A default of null takes anything, and null may replace anything. A text
    default takes anything too: text is how configs spell sentinels that other
    values replace (``sets: all`` or ``[in_val C-1]``, ``steps: auto`` or
    ``1000``). Ints and floats are both numbers; a number, a boolean, a list or
    a mapping must get its own kind.
    """
    if default is None or value is None or isinstance(default, str):
        return None
    want, got = _kind(default), _kind(value)
    if want == got:
        return None
    message = f"{path} = {value!r}: expected {_EXPECTED.get(want, want)} (the default is {default!r})"
    if want == "number" and isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+,\d+\s*", value):
        message += f" (a decimal comma? write {value.strip().replace(',', '.')})"
    return message


def _locate(config: dict, path: str, create: bool):
    parts = path.split(SEPARATOR)
    if any(p == "" for p in parts):
        raise ConfigError(f"bad key path {path!r}")
    node: Any = config
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = SEPARATOR.join(parts[:depth]) or "the top level"
        if isinstance(node, dict):
            if part not in node:
                if not create:
                    raise ConfigError(_unknown_key(path, part, node, where))
                if not last:
                    node[part] = {}
            if last:
                return node, part
            node = node[part]
        elif isinstance(node, list) and re.fullmatch(r"\d+", part) and int(part) < len(node):
            if last:
                return node, int(part)
            node = node[int(part)]
        else:
            raise ConfigError(f"cannot set {path!r}: {where} is not a mapping")
    raise AssertionError("unreachable")


def _unknown_key(path: str, part: str, node: dict, where: str) -> str:
    msg = f"unknown config key {path!r}: {where} has no key {part!r}"
    close = difflib.get_close_matches(part, [str(k) for k in node], n=1)
    if close:
        msg += f" (did you mean {close[0]!r}?)"
    return msg + "; use a 'delta+:' column to add a new key"


def iter_leaves(config: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(config, dict):
        for key, val in config.items():
            yield from iter_leaves(val, f"{prefix}{SEPARATOR}{key}" if prefix else str(key))
    elif isinstance(config, list) and any(isinstance(v, (dict, list)) for v in config):
        for i, val in enumerate(config):
            yield from iter_leaves(val, f"{prefix}{SEPARATOR}{i}")
    else:
        yield prefix, config


def unfilled_placeholders(config: dict) -> list[str]:
    """Key paths whose value is still a ``<placeholder>``-style marker."""
    return [path for path, val in iter_leaves(config)
            if isinstance(val, str) and _PLACEHOLDER.fullmatch(val.strip())]


def diff(default: dict, resolved: dict) -> list[tuple[str, Any, Any]]:
    """(key path, default value, resolved value) for every leaf that differs."""
    old = dict(iter_leaves(default))
    new = dict(iter_leaves(resolved))
    missing = object()
    out = []
    for key in list(old) + [k for k in new if k not in old]:
        a, b = old.get(key, missing), new.get(key, missing)
        if a != b or type(a) is not type(b):
            out.append((key, None if a is missing else a, None if b is missing else b))
    return out


_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)     # libyaml's, where PyYAML has it: 5x faster


def dump_yaml(config: dict) -> str:
    return yaml.dump(config, Dumper=_DUMPER, sort_keys=False, allow_unicode=True)
