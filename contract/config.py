"""The one config mechanism of the three command lines: typed dataclasses, YAML then flags.

A config is a dataclass whose fields are declared with :func:`option` (a default, the field's one
documentation, optional choices and a help group); a field whose default is another such dataclass is
a section (``select.budget``). From that one declaration come:

- the values: defaults < a YAML file < ``--key value`` flags (:func:`resolve`), coerced to the field's
  type, with every problem (unknown keys with the closest known one, wrong types, bad choices,
  non-finite numbers) reported at once in one :class:`ConfigError`;
- the command line (:func:`add_arguments`): ``--key_name`` and ``--key-name`` both work, sections are
  ``--section.key``, booleans take ``true/false`` or stand alone (``--resume``; ``--no-progress`` for
  those that default to true), lists take several values; ``--help`` shows each field's documentation
  and default; the flags that were actually given are known (:func:`given`), so settings from elsewhere
  (a judge folder, a saved workspace config) are overridden only by a flag the user typed;
- the saved YAML (:func:`to_yaml`): every key preceded by its documentation as a comment.

Each package's ``config.py`` then holds only field declarations and the checks that relate fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import os
import textwrap
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

class ConfigError(ValueError, KeyError):
    """Every problem with a config, one per line. A ValueError (and a KeyError, for code that catches an
    unknown key as one)."""

    def __init__(self, issues: Iterable[str], title: str = "invalid config"):
        self.issues = list(dict.fromkeys(issues))
        super().__init__(f"{title}:\n  - " + "\n  - ".join(self.issues))

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


def option(default: Any, help: str, *, choices: Iterable[str] | None = None, group: str | None = None,
           required: bool | str = False, aliases: Iterable[str] = (), metavar: str | None = None) -> Any:
    """A documented config field. ``choices``: the allowed values; ``group``: the ``--help`` section;
    ``required``: must be given (an empty default means "not set"; a string says what to give, for the
    error); ``aliases``: other flag names (old spellings keep working)."""
    meta = {"help": help, "group": group, "required": required, "aliases": tuple(aliases)}
    if choices is not None:
        meta["choices"] = tuple(choices)
    if metavar:
        meta["metavar"] = metavar
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        return dataclasses.field(default_factory=lambda d=default: dataclasses.replace(d), metadata=meta)
    if isinstance(default, type) and dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=default, metadata=meta)
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# --------------------------------------------------------------------------- the fields


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One settable value: its dotted key, the dataclass field, the type and whether None is allowed."""

    key: str
    field: dataclasses.Field
    type: Any
    optional: bool

    @property
    def help(self) -> str:
        return self.field.metadata.get("help", "")

    @property
    def choices(self) -> tuple | None:
        return self.field.metadata.get("choices")

    @property
    def default(self) -> Any:
        f = self.field
        return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def _split_optional(hint: Any) -> tuple[Any, bool]:
    args = typing.get_args(hint)
    if args and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True
    return hint, False


def _origin(typ: Any) -> Any:
    return typing.get_origin(typ) or typ


def is_section(cls_or_obj: Any, name: str) -> bool:
    hint = typing.get_type_hints(cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj))[name]
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def leaves(cls: type, prefix: str = "") -> list[Leaf]:
    """Every settable field of ``cls`` and its sections, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            out += leaves(hint, f"{prefix}{f.name}.")
        else:
            typ, optional = _split_optional(hint)
            out.append(Leaf(prefix + f.name, f, typ, optional))
    return out


def sections(cls: type) -> list[str]:
    hints = typing.get_type_hints(cls)
    return [f.name for f in dataclasses.fields(cls)
            if isinstance(hints[f.name], type) and dataclasses.is_dataclass(hints[f.name])]


def closest(key: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the known key nearest to ``key``, else the list of known keys."""
    known = list(known)
    norm = key.lstrip("-").replace("-", "_")
    match = difflib.get_close_matches(norm, known, n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else f" (known keys: {', '.join(known)})"


# --------------------------------------------------------------------------- values


_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}
_NULL = {"null", "none", "~"}


def coerce(leaf: Leaf, value: Any, where: str) -> tuple[Any, str | None]:
    """``(value, None)`` converted to the field's type, or ``(None, problem)``."""
    typ, name = _origin(leaf.type), leaf.key
    if value is None or (leaf.optional and isinstance(value, str) and value.strip().lower() in _NULL):
        if leaf.optional:
            return None, None
        if typ in (list, dict):
            return typ(), None
        if typ is str:
            return "", None
        return None, f"{name}: null is not allowed (expected {getattr(typ, '__name__', typ)}) [{where}]"
    if typ is bool:
        if isinstance(value, bool):
            return value, None
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE, None
        return None, f"{name}: {value!r} is not true or false [{where}]"
    if typ is int:
        if isinstance(value, str):
            try:
                value = float(value) if any(c in value.lower() for c in ".e") else int(value)
            except ValueError:
                return None, f"{name}: {value!r} is not an integer [{where}]"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not value.is_integer()):
            return None, f"{name}: {value!r} is not an integer [{where}]"
        return int(value), None
    if typ is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as text
            try:
                value = float(value)
            except ValueError:
                return None, f"{name}: {value!r} is not a number [{where}]"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, f"{name}: {value!r} is not a number [{where}]"
        return float(value), None
    if typ is str:
        if isinstance(value, (dict, list, bool)):
            return None, f"{name}: {value!r} is not text [{where}]"
        return str(value), None
    if typ is list:
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip().startswith("[") else [value]
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            return None, f"{name}: {value!r} is not a list [{where}]"
        return list(value), None
    if typ is dict:
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                return None, f"{name}: {value!r} is not a mapping [{where}]"
        if not isinstance(value, Mapping):
            return None, f"{name}: {value!r} is not a mapping [{where}]"
        return dict(value), None
    return value, None


def _leaf_index(cls: type) -> dict[str, Leaf]:
    return {leaf.key: leaf for leaf in leaves(cls)}


def _flatten(values: Mapping, cls: type, prefix: str = "") -> Iterable[tuple[str, Any]]:
    """(dotted key, value) pairs of a nested mapping, sections opened, leaves kept as they are."""
    secs = set(sections(cls)) if cls is not None else set()
    for key, value in values.items():
        key = str(key)
        head = key.split(".", 1)[0]
        if head in secs and "." not in key and isinstance(value, Mapping):
            sub = typing.get_type_hints(cls)[head]
            yield from _flatten(value, sub, f"{prefix}{head}.")
        elif head in secs and "." in key:
            sub = typing.get_type_hints(cls)[head]
            yield from _flatten({key.split(".", 1)[1]: value}, sub, f"{prefix}{head}.")
        else:
            yield prefix + key, value


def _set(cfg: Any, key: str, value: Any) -> None:
    *path, last = key.split(".")
    target = cfg
    for part in path:
        target = getattr(target, part)
    setattr(target, last, value)


def get(cfg: Any, key: str) -> Any:
    target = cfg
    for part in key.split("."):
        target = getattr(target, part)
    return target


def apply(cfg: Any, values: Mapping, where: str, issues: list[str]) -> Any:
    """Set ``values`` (a nested mapping or dotted keys) on ``cfg`` in place; problems go to ``issues``."""
    index = _leaf_index(type(cfg))
    secs = sections(type(cfg))
    for key, value in _flatten(values, type(cfg)):
        leaf = index.get(key)
        if leaf is None:
            if key in secs:
                issues.append(f"{key}: is a section; expected a mapping, got {type(value).__name__} [{where}]")
            else:
                known = list(index) + secs
                issues.append(f"unknown key {key!r}{closest(key, known)} [{where}]")
            continue
        converted, problem = coerce(leaf, value, where)
        if problem:
            issues.append(problem)
        else:
            _set(cfg, key, converted)
    return cfg


def check_fields(cfg: Any) -> list[str]:
    """The checks every config gets: choices, finite numbers, required fields."""
    issues = []
    for leaf in leaves(type(cfg)):
        value = get(cfg, leaf.key)
        if leaf.choices is not None and value is not None:
            bad = [v for v in (value if isinstance(value, list) else [value]) if v not in leaf.choices]
            if bad:
                issues.append(f"{leaf.key}: {bad[0]!r} is not one of {', '.join(map(str, leaf.choices))}")
        if isinstance(value, float) and not math.isfinite(value):
            issues.append(f"{leaf.key}: must be a finite number, got {value}")
        required = leaf.field.metadata.get("required")
        if required and value in ("", None, [], {}):
            issues.append(f"{leaf.key}: required" + (f" ({required})" if isinstance(required, str) else ""))
    return issues


def load_yaml(path: str | os.PathLike) -> dict:
    """A YAML mapping from ``path`` (an empty file is an empty mapping); ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"config file not found: {path}"], "cannot read the config")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError([f"{path}: not valid YAML: {err}"], "cannot read the config") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: expected a mapping of key: value, got {type(data).__name__}"],
                          "cannot read the config")
    return data


def build(cls: type, *layers: tuple[Mapping, str], base: Any = None, validate=None,
          title: str = "invalid config") -> Any:
    """``cls`` from its defaults (or ``base``), then each ``(values, where)`` layer in order; then the
    common checks and ``validate(cfg) -> [problems]``. Every problem in one ConfigError."""
    cfg = dataclasses.replace(base) if base is not None else cls()
    if base is not None:  # sections are dataclasses too: copy them, the caller's base stays as it was
        for name in sections(cls):
            setattr(cfg, name, dataclasses.replace(getattr(base, name)))
    issues: list[str] = []
    for values, where in layers:
        apply(cfg, values, where, issues)
    issues += check_fields(cfg)  # a value that did not convert kept its default, so these checks still run
    if validate is not None:
        issues += validate(cfg)
    if issues:
        raise ConfigError(issues, title)
    return cfg


# --------------------------------------------------------------------------- YAML out


def _dump_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000, allow_unicode=True).strip().removesuffix(
        "\n...").removesuffix("...").strip()


def to_yaml(cfg: Any, header: str = "", groups: Mapping[str, str] | None = None) -> str:
    """The config as YAML, each key preceded by its documentation as a comment; sections as mappings,
    top-level keys grouped under ``groups`` titles when the fields name a group."""
    lines = [f"# {h}" if h else "#" for h in header.splitlines()] if header else []
    lines += _yaml_lines(cfg, "", groups or {})
    return "\n".join(lines).lstrip("\n") + "\n"


def _yaml_lines(obj: Any, indent: str, groups: Mapping[str, str]) -> list[str]:
    lines: list[str] = []
    group = None
    secs = set(sections(type(obj)))
    for f in dataclasses.fields(obj):
        g = f.metadata.get("group")
        if g and g != group and not indent:
            group = g
            lines += ["", f"# ---- {groups.get(g, g)}"]
        for chunk in textwrap.wrap(f.metadata.get("help", ""), 98 - len(indent)) or []:
            lines.append(f"{indent}# {chunk}")
        value = getattr(obj, f.name)
        if f.name in secs:
            lines.append(f"{indent}{f.name}:")
            lines += _yaml_lines(value, indent + "  ", groups)
            lines.append("")
        else:
            lines.append(f"{indent}{f.name}: {_dump_value(value)}")
    return lines


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def save_yaml(cfg: Any, path: str | os.PathLike, header: str = "", groups: Mapping[str, str] | None = None) -> Path:
    from contract.io import write_text

    write_text(path, to_yaml(cfg, header, groups))
    return Path(path)


# --------------------------------------------------------------------------- command line


def _dest(key: str) -> str:
    return "cfg:" + key


def fmt_default(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, dict)):
        return _dump_value(value)
    return str(value)


def add_arguments(parser: argparse.ArgumentParser, cls: type, *, only: Iterable[str] | None = None,
                  groups: Mapping[str, str] | None = None, skip: Iterable[str] = (),
                  aliases: Mapping[str, str] | None = None) -> None:
    """One flag per field of ``cls`` (``only``: just these sections / keys), defaulting to "not given".

    ``--key_name`` and ``--key-name`` both work; a section's keys are ``--section.key``; ``aliases``
    maps extra flag names (without ``--``) to keys. Read the result with :func:`given`."""
    groups = dict(groups or {})
    skip = set(skip)
    only = tuple(only) if only is not None else None
    arg_groups: dict[str, Any] = {}
    extra = {}
    for flag, key in (aliases or {}).items():
        extra.setdefault(key, []).append(flag)
    for leaf in leaves(cls):
        if leaf.key in skip or (only is not None and leaf.key not in extra and not any(
                leaf.key == o or leaf.key.startswith(o + ".") for o in only)):
            continue
        meta = leaf.field.metadata
        help_text = leaf.help
        if leaf.choices:
            help_text += f" One of: {', '.join(map(str, leaf.choices))}."
        if meta.get("required"):
            help_text += " (required)"
        else:
            help_text += f" (default: {fmt_default(leaf.default)})"
        kwargs: dict[str, Any] = dict(dest=_dest(leaf.key), default=argparse.SUPPRESS,
                                      help=help_text.replace("%", "%%"))
        typ = _origin(leaf.type)
        if typ is bool:
            kwargs.update(nargs="?", const="true", metavar="BOOL")
        elif typ is list:
            kwargs.update(nargs="+", metavar=meta.get("metavar", "VALUE"))
        else:
            kwargs.update(metavar=meta.get("metavar", getattr(typ, "__name__", "VALUE").upper()))
        names = [leaf.key] + list(meta.get("aliases", ())) + extra.get(leaf.key, [])
        flags = []
        for n in names:
            for spelling in (n, n.replace("_", "-")):
                if f"--{spelling}" not in flags:
                    flags.append(f"--{spelling}")
        section = leaf.key.split(".")[0] if "." in leaf.key else meta.get("group")
        target = parser
        if section:
            if section not in arg_groups:
                arg_groups[section] = parser.add_argument_group(groups.get(section, f"{section} settings"))
            target = arg_groups[section]
        target.add_argument(*flags, **kwargs)
        if typ is bool and leaf.default is True:
            target.add_argument(f"--no-{leaf.key.replace('_', '-')}", dest=_dest(leaf.key), action="store_const",
                                const="false", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def given(namespace: argparse.Namespace) -> dict[str, Any]:
    """The config keys whose flags were given, with their raw values."""
    return {k[4:]: v for k, v in vars(namespace).items() if k.startswith("cfg:")}


def unknown_flags(unknown: list[str], known: Iterable[str]) -> list[str]:
    """Problems for the arguments argparse did not recognise (``parse_known_args``), each unknown option
    with the closest known key, its value not reported a second time."""
    issues, skip_value, known = [], False, list(known)
    for tok in unknown:
        if tok.startswith("-") and not _is_number(tok):
            name = tok.split("=")[0]
            issues.append(f"unknown option {name!r}{closest(name, known)}")
            skip_value = "=" not in tok
        elif skip_value:
            skip_value = False
        else:
            issues.append(f"unexpected argument {tok!r} (options take the form --key value)")
    return issues


def _is_number(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def resolve(cls: type, *, yaml_path: str | os.PathLike | None = None, base: Any = None,
            flags: Mapping[str, Any] | None = None, validate=None, title: str = "invalid config") -> Any:
    """Defaults (or ``base``) < the YAML file < flags, checked; one ConfigError with every problem."""
    layers = []
    if yaml_path:
        layers.append((load_yaml(yaml_path), str(yaml_path)))
    if flags:
        layers.append((dict(flags), "command line"))
    return build(cls, *layers, base=base, validate=validate, title=title)
