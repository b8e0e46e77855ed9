"""The vocabulary of message schemas: field types (a predicate with a name
for error messages), ``Schema`` (one op's required and optional fields) and
``Accepts`` (the ops one end of a connection takes).  The schemas themselves
are in ``messages`` and, for the coordination primitives, ``primitives``."""
from __future__ import annotations

from trioflow.errors import ProtocolError
from trioflow.protocol.serialize import Serialized


class BadMessage(ProtocolError):
    """A peer's message that does not match its op's schema."""


# ---------------------------------------------------------------- field types
# A field type is a predicate with a name for error messages.

class Field:
    __slots__ = ("name", "test")

    def __init__(self, name: str, test):
        self.name = name
        self.test = test  # (value, inproc) -> bool


_SCALARS = (str, int, float, bytes, bool, type(None))
#: tuple keys nest (("x", 0), 1) but never deeply; deeper is refused
_MAX_KEY_TUPLES = 64


def _is_key(value, inproc=False) -> bool:
    """A task key: str, bytes, int or float, or a tuple of those (nested)."""
    kind = type(value)
    if kind is str or kind is int or kind is bytes or kind is float:
        return True
    if kind is not tuple:
        return False
    pending = [value]
    seen = 0
    while pending:  # a worklist, not recursion: keys come from peers
        seen += 1
        if seen > _MAX_KEY_TUPLES:
            return False
        for item in pending.pop():
            if type(item) is tuple:
                pending.append(item)
            elif type(item) not in _SCALARS:
                return False
    return True


def _instance(*types):
    return lambda value, inproc=False: isinstance(value, types) and not (
        type(value) is bool and bool not in types)


STR = Field("a string", _instance(str))
INT = Field("an integer", _instance(int))
NUMBER = Field("a number", _instance(int, float))
BOOL = Field("a boolean", lambda v, inproc=False: type(v) is bool or v in (0, 1))
BYTES = Field("bytes", _instance(bytes))
KEY = Field("a key (a string, number, bytes or a tuple of them)", _is_key)
ANY = Field("anything", lambda v, inproc=False: True)
#: a pickled value (pickle bytes, or frames); in-process connections pass the object itself
PAYLOAD = Field("a pickled value", lambda v, inproc=False: inproc or v is None or type(v) in (
    Serialized, bytes))
NAME = Field("a name (a string, number or tuple)", _is_key)
TIMEOUT = Field("a number of seconds", lambda v, inproc=False: v is None or (
    type(v) in (int, float)))


def list_of(item: Field) -> Field:
    test = item.test

    def check(value, inproc=False):
        return type(value) in (list, tuple) and all(test(x, inproc) for x in value)
    return Field(f"a list, each item {item.name}", check)


def dict_of(key: Field, value: Field) -> Field:
    key_test, value_test = key.test, value.test

    def check(mapping, inproc=False):
        return type(mapping) is dict and all(
            key_test(k, inproc) and value_test(v, inproc) for k, v in mapping.items())
    return Field(f"a map of {key.name} to {value.name}", check)


def one_of(*fields: Field) -> Field:
    return Field(" or ".join(f.name for f in fields),
                 lambda v, inproc=False: any(f.test(v, inproc) for f in fields))


def record(**fields) -> Field:
    """A nested message-like map with its own schema."""
    schema = Schema(fields)

    def check(value, inproc=False):
        return type(value) is dict and schema.error(value, inproc) is None
    check.schema = schema
    return Field("a map of " + ", ".join(fields), check)


KEYS = list_of(KEY)
ADDRESSES = list_of(STR)
RESOURCES = dict_of(STR, NUMBER)


class Optional:
    """A field that may be missing or None."""

    __slots__ = ("field",)

    def __init__(self, field: Field):
        self.field = field


def opt(field: Field) -> Optional:
    return Optional(field)


# ---------------------------------------------------------------- schemas

class Schema:
    __slots__ = ("required", "optional")

    def __init__(self, fields: dict):
        self.required = [(n, f) for n, f in fields.items() if isinstance(f, Field)]
        self.optional = [(n, f.field) for n, f in fields.items() if isinstance(f, Optional)]

    def error(self, msg: dict, inproc: bool = False) -> str | None:
        """What is wrong with ``msg``, or None."""
        for name, field in self.required:
            if name not in msg:
                return f"field {name!r} is missing"
            if not field.test(msg[name], inproc):
                return f"field {name!r} must be {field.name}, not {_shown(msg[name])}"
        for name, field in self.optional:
            value = msg.get(name)
            if value is not None and not field.test(value, inproc):
                return f"field {name!r} must be {field.name}, not {_shown(value)}"
        return None


def _shown(value) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40] + '...' if len(text) > 40 else text}"


class Accepts:
    """The ops one end of a connection takes, each with its schema.  Not
    ``strict``: an op without a schema still reaches the handler, which
    answers that it does not know it (so a newer peer's request fails
    alone); strict ends close the connection instead."""

    def __init__(self, what: str, *tables: dict, strict: bool = True):
        self.what = what
        self.strict = strict
        self.schemas = {op: Schema(fields) for table in tables for op, fields in table.items()}

    def __contains__(self, op) -> bool:
        return op in self.schemas

    def check(self, msg: dict, inproc: bool = False) -> None:
        """Raise BadMessage unless ``msg`` is a message this end takes."""
        op = msg.get("op")
        schema = self.schemas.get(op) if type(op) is str else None
        if schema is None and not self.strict and type(op) is str:
            schema = _NO_FIELDS
        if schema is None:
            raise BadMessage(f"{self.what} does not take op {_shown(op)}"
                             if type(op) is str or op is None and "op" in msg
                             else f"a message without a valid op: {_shown(op)}")
        rid = msg.get("rid")
        if rid is not None and type(rid) is not int:
            raise BadMessage(f"{op!r}: field 'rid' must be an integer, not {_shown(rid)}")
        error = schema.error(msg, inproc)
        if error is not None:
            raise BadMessage(f"bad {op!r} message: {error}")


_NO_FIELDS = Schema({})
