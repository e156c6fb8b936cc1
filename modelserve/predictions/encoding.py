"""Turning any prediction-log record into JSON that every store takes.

A request can carry what neither orjson nor PostgreSQL takes: a lone surrogate (JSON's
``"\\ud800"`` parses to one), a NUL character, non-finite floats, integers beyond 64 bits, or
lists nested deeper than orjson's 254 levels (or Python's recursion limit). ``loggable`` spells
each of them in an escaped form that reads back sensibly: the escape as text (``\\ud800``,
``\\u0000``), ``"nan"``, the integer's digits, and a subtree deeper than ``MAX_DEPTH`` as one
string holding its JSON text. ``encode`` never raises: a record orjson refuses is escaped first.

``encode`` turns a record's JSON values (inputs, outputs, error) into ``orjson.Fragment``s, their
JSON text, once: the journal line, the SQLite or PostgreSQL column and the spill file then copy
that text instead of walking the values again (for a 100-row request, the second encoding was a
tenth of the server's CPU). A value may also arrive as a Fragment already (``raw_json``: the
request body as it came, see ``InferenceService``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import orjson

from modelserve.predictions.schemas import PredictionRecord

FIELDS = tuple(f.name for f in dataclasses.fields(PredictionRecord))
MAX_DEPTH = 100
"""Containers nested deeper than this (within one logged value) are logged as their JSON text:
well within orjson's limit of 254 with the record around them, and within the recursion limit."""
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
_TEXT_FIELDS = ("caller", "protocol", "status", "variant")


def escape_text(value: str) -> str:
    """``value`` with lone surrogates and NUL spelled as their escapes (``\\ud800``)."""
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            value = value.encode("utf-8", "backslashreplace").decode()
    return value.replace("\x00", "\\u0000")  # PostgreSQL text cannot hold NUL


def _scalar(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return str(value)  # beyond what JSON encoders take as an integer
    if isinstance(value, str):
        return escape_text(value)
    if isinstance(value, int | float):
        return value
    try:
        orjson.dumps(value, option=_OPTIONS)
    except TypeError:
        return escape_text(str(value))
    return value


def loggable(value: Any, depth: int = 0) -> Any:
    """``value`` with everything JSON or PostgreSQL cannot hold escaped (see the module doc), so
    any request can be logged. Never recurses more than ``MAX_DEPTH`` levels."""
    if isinstance(value, list | tuple):
        if depth >= MAX_DEPTH:
            return "".join(_json_text(value))
        return [loggable(v, depth + 1) for v in value]
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            return "".join(_json_text(value))
        return {escape_text(str(k)): loggable(v, depth + 1) for k, v in value.items()}
    return _scalar(value)


def _json_text(value: Any) -> Iterator[str]:
    """Compact JSON text of ``value`` (escaped scalars), without recursion: any depth."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Literal):
            yield item.text
        elif isinstance(item, list | tuple):
            stack.append(_Literal("]"))
            for index in range(len(item) - 1, -1, -1):
                stack.append(item[index])
                if index:
                    stack.append(_Literal(","))
            yield "["
        elif isinstance(item, dict):
            stack.append(_Literal("}"))
            entries = list(item.items())
            for index in range(len(entries) - 1, -1, -1):
                key, child = entries[index]
                stack.append(child)
                stack.append(_Literal(orjson.dumps(escape_text(str(key))).decode() + ":"))
                if index:
                    stack.append(_Literal(","))
            yield "{"
        else:
            yield orjson.dumps(_scalar(item), option=_OPTIONS).decode()


@dataclasses.dataclass(frozen=True)
class _Literal:
    text: str


def raw_json(text: bytes) -> orjson.Fragment:
    """JSON text (valid, and whose strings hold no NUL, lone surrogate or newline) to log as it
    is."""
    return orjson.Fragment(text)


def _value(value: Any) -> Any:
    """A Fragment's value again (parsed from its text); any other value as it is."""
    if isinstance(value, orjson.Fragment):
        return orjson.loads(orjson.dumps(value))
    return value


def escaped(record: PredictionRecord) -> PredictionRecord:
    """The record with its values escaped (``loggable``); what is stored when the record as it
    came cannot be."""
    changes: dict[str, Any] = {
        name: loggable(_value(getattr(record, name))) for name in ("inputs", "outputs", "error")
    }
    for name in _TEXT_FIELDS:
        value = getattr(record, name)
        if isinstance(value, str):
            changes[name] = escape_text(value)
    return dataclasses.replace(record, **changes)


def _fragment(value: Any) -> Any:
    if value is None or isinstance(value, orjson.Fragment):
        return value
    return orjson.Fragment(orjson.dumps(value, option=_OPTIONS))


class Encoded(NamedTuple):
    """What ``encode`` gives: the record every store takes, its JSON line, and whether it had
    to be escaped."""

    record: PredictionRecord
    line: bytes
    escaped: bool


def _with_fragments(record: PredictionRecord) -> PredictionRecord:
    """A copy of the record with its JSON values as Fragments. Its fields copied as they are:
    ``dataclasses.replace`` runs ``__init__`` through the field list, 10 of the 14 us an
    encode took on the predict path (no field has a default factory or post-init to run)."""
    encoded: PredictionRecord = object.__new__(PredictionRecord)
    fields = dict(record.__dict__)
    fields["inputs"] = _fragment(record.inputs)
    fields["outputs"] = _fragment(record.outputs)
    fields["error"] = _fragment(record.error)
    encoded.__dict__.update(fields)  # frozen: set through __dict__, as dataclasses does
    return encoded


def _encoded(record: PredictionRecord, *, was_escaped: bool) -> Encoded:
    encoded = _with_fragments(record)
    # orjson serialises the dataclass itself (its fields, in order): a third of the time of
    # building the dict first, on the predict path.
    line = orjson.dumps(encoded, option=_OPTIONS | orjson.OPT_APPEND_NEWLINE)
    return Encoded(encoded, line, was_escaped)


def encode(record: PredictionRecord) -> Encoded:
    """The record every store takes, its JSON values as Fragments (see the module doc), and its
    JSON line, ending with a newline: of the record as it came when orjson takes it (the common
    case), else of its escaped form. Never raises for what a request can carry."""
    try:
        return _encoded(record, was_escaped=False)
    except TypeError:
        pass
    return _encoded(escaped(record), was_escaped=True)
