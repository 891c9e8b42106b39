"""Spec strings: ``"name:key=value,key=value|name2:..."`` <-> compression steps.

The registry below maps each built-in method name to the module and class that implement it;
modules are imported when first used, so a method whose module is missing only fails when it is
asked for. A method defined anywhere else (a :class:`~cfprune.compression.base.Compressor`
subclass with a ``name`` and a ``schema``, in a user's module or a test) is found by its name
once its class is defined: nothing here is edited to add it.

Grammar: steps separated by ``|``, applied left to right; a step is a method name, optionally
followed by ``:`` and ``key=value`` pairs separated by ``,``. Spaces around tokens are ignored,
names and words are case-insensitive. ``none`` sets an optional parameter to None. The empty spec
is the identity (no step).
"""

from __future__ import annotations

import importlib

from ..errors import SpecError
from .base import Compressor

METHODS = {
    "prune-rows": ("cfprune.compression.rows", "PruneRows"),
    "magnitude": ("cfprune.compression.magnitude", "Magnitude"),
    "lowrank": ("cfprune.compression.lowrank", "LowRank"),
    "fp16": ("cfprune.compression.scalar", "Float16"),
    "int8": ("cfprune.compression.scalar", "Int8"),
    "int4": ("cfprune.compression.scalar", "Int4"),
    "int2": ("cfprune.compression.scalar", "Int2"),
    "pq": ("cfprune.compression.pq", "ProductQuantization"),
    "distill": ("cfprune.compression.distill", "Distill"),
    "fold-users": ("cfprune.compression.fold", "FoldUsers"),
}


def defined_methods():
    """dict name -> Compressor class of every named Compressor subclass defined so far that is
    not a built-in of :data:`METHODS`."""
    out, todo = {}, list(Compressor.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        name = cls.__dict__.get("name")
        if name and name not in METHODS:
            out[name] = cls
    return out


def method_class(name):
    """The Compressor class registered under ``name``; SpecError listing the valid names."""
    key = name.strip().lower()
    if key not in METHODS:
        defined = defined_methods()
        if key in defined:
            return defined[key]
        raise SpecError(f"unknown compression method {name!r}; valid methods: "
                        f"{', '.join([*METHODS, *defined])}")
    module_name, class_name = METHODS[key]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise
        raise SpecError(f"method {key!r} is not available in this installation "
                        f"({module_name} is missing)") from None
    cls = getattr(module, class_name)
    if not (isinstance(cls, type) and issubclass(cls, Compressor)):
        raise SpecError(f"{module_name}.{class_name} is not a Compressor")
    return cls


def available_methods():
    """dict name -> Compressor class of the methods whose module can be imported."""
    out = {}
    for name in METHODS:
        try:
            out[name] = method_class(name)
        except SpecError:
            continue
    out.update(defined_methods())
    return out


def parse_step(text):
    """One Compressor from ``"name"`` or ``"name:key=value,..."``, its parameters converted and
    checked now (:meth:`~cfprune.compression.base.Compressor.validated`): a bad spec fails at
    parse time with a one-line SpecError."""
    text = text.strip()
    if not text:
        raise SpecError("empty step in the spec (two '|' in a row, or a '|' at an end)")
    name, colon, args = text.partition(":")
    cls = method_class(name)
    params = {}
    if args.strip():
        for pair in args.split(","):
            key, eq, value = pair.partition("=")
            key = key.strip().lower()
            if not eq or not key or not value.strip():
                raise SpecError(f"{cls.name}: {pair.strip()!r} is not key=value; valid "
                                f"parameters: {', '.join(cls.schema) or '(none)'}")
            if key in params:
                raise SpecError(f"{cls.name}: parameter {key} given twice")
            params[key] = value.strip()
    elif colon:
        raise SpecError(f"{cls.name}: nothing after ':'; write {cls.name} alone or give "
                        f"key=value pairs")
    return cls(**params).validated()


def parse_spec(spec):
    """list[Compressor] from a spec string (``[]`` for the empty spec)."""
    if not isinstance(spec, str):
        raise SpecError(f"a spec must be a string, got {type(spec).__name__}")
    if not spec.strip():
        return []
    return [parse_step(part) for part in spec.split("|")]


def format_spec(steps):
    """The canonical spec string of a list of Compressors (parameters at their default left
    out, schema order); ``parse_spec(format_spec(steps))`` builds equal steps."""
    return "|".join(step.spec_string() for step in steps)


def canonical_spec(spec):
    """The canonical form of a spec string."""
    return format_spec(parse_spec(spec))


def describe():
    """Text listing every method and its parameters (type, allowed values, default, help)."""
    lines = []
    for name in [*METHODS, *defined_methods()]:
        try:
            cls = method_class(name)
        except SpecError as e:
            lines += [f"{name}", f"    (not available: {e})", ""]
            continue
        doc = (cls.__doc__ or "").strip().splitlines()
        lines.append(f"{name}: {doc[0] if doc else ''}")
        for key, p in cls.schema.items():
            default = "none" if p.default is None else p.default
            if isinstance(default, bool):
                default = str(default).lower()
            lines.append(f"    {key:<13} {p.allowed():<34} default {default}. {p.help}")
        lines.append("")
    lines.append("Chain steps with '|', e.g. prune-rows:keep=0.9,by=popularity|lowrank:rank=32|"
                 "pq:m=8")
    return "\n".join(lines)
