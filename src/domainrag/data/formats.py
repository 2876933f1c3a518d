"""Training-dataset readers: chat (SFT) and query/positive pairs (embedding fine-tuning).

Every problem raises :class:`~domainrag.errors.DatasetError` naming the file, the 1-based line and
the field, plus what to do, because these files are hand-made by users and the first training
step is far too late to discover a typo on line 3,000.

Chat JSONL formats (auto-detected from the first record, then required on every line):

* ``openai``: ``{"messages": [{"role": "user", "content": ...}, ...]}``
* ``sharegpt``: ``{"conversations": [{"from": "human", "value": ...}, {"from": "gpt", ...}]}``
* ``alpaca``: ``{"instruction": ..., "input": ..., "output": ...}`` (``input`` optional)
* ``prompt-completion``: ``{"prompt": ..., "completion": ...}``

Pair formats: CSV with a header, or JSONL, with ``query`` (or ``anchor``), ``positive`` and
optional ``negative`` / ``negative_1`` ... ``negative_n`` (JSONL also accepts a ``negatives`` list).
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from domainrag.errors import DatasetError

log = logging.getLogger(__name__)

ChatFormat = Literal["openai", "sharegpt", "alpaca", "prompt-completion"]
PairFormat = Literal["pairs-csv", "pairs-jsonl"]
Messages = list[dict[str, str]]

CHAT_FORMAT_KEYS: dict[ChatFormat, tuple[str, ...]] = {
    "openai": ("messages",),
    "sharegpt": ("conversations",),
    "alpaca": ("instruction", "output"),
    "prompt-completion": ("prompt", "completion"),
}
ROLES = ("system", "user", "assistant")
_SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
}
QUERY_COLUMNS = ("query", "anchor")
POSITIVE_COLUMN = "positive"
_NEGATIVE = re.compile(r"^negative(?:_\d+)?$")
_CHAT_HINT = (
    "each line must be one JSON object in one of the formats: "
    '{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}, '
    '{"instruction": "...", "input": "...", "output": "..."}, '
    '{"conversations": [{"from": "human", "value": "..."}, {"from": "gpt", "value": "..."}]}, '
    '{"prompt": "...", "completion": "..."}'
)


@dataclass(frozen=True)
class Pair:
    """One embedding training example: a query, its relevant passage, optional hard negatives."""

    query: str
    positive: str
    negatives: tuple[str, ...] = ()


@dataclass(frozen=True)
class PairsFile:
    """Pairs read from one file, with what was dropped on the way."""

    pairs: list[Pair]
    format: PairFormat
    duplicates_dropped: int


# ---------------------------------------------------------------------------------------------
# JSONL plumbing


def parse_jsonl(path: Path, lines: Iterable[str], first_line: int = 1) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of ``lines`` read from ``path``, numbered from
    ``first_line``; errors name the line."""
    for lineno, raw in enumerate(lines, start=first_line):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                str(path),
                f"invalid JSON ({exc.msg}: column {exc.colno})",
                line=lineno,
                hint="JSONL needs exactly one complete JSON object per line",
            ) from None
        if not isinstance(obj, dict):
            raise DatasetError(
                str(path),
                f"expected a JSON object, found {type(obj).__name__}",
                line=lineno,
                hint="JSONL needs exactly one JSON object ({...}) per line",
            )
        yield lineno, obj


def iter_jsonl(path: Path, encoding: str = "utf-8-sig") -> Iterator[tuple[int, dict[str, Any]]]:
    """:func:`parse_jsonl` over the file ``path``; a missing file raises :class:`DatasetError` too."""
    if not path.is_file():
        raise DatasetError(str(path), "file not found", hint="check the path (or upload the file first)")
    with path.open(encoding=encoding) as fh:
        yield from parse_jsonl(path, fh)


def _text(path: Path, line: int, obj: dict[str, Any], field: str, *, required: bool = True) -> str:
    """A string field, stripped; missing/empty/non-string values raise when required."""
    value = obj.get(field)
    if value is None and not required:
        return ""
    if value is None:
        raise DatasetError(str(path), "missing field", line=line, field=field, hint=f"add a '{field}' value")
    if not isinstance(value, str):
        raise DatasetError(
            str(path),
            f"expected a string, found {type(value).__name__}",
            line=line,
            field=field,
            hint="plain text only (multimodal content lists are not supported)",
        )
    if required and not value.strip():
        raise DatasetError(str(path), "empty text", line=line, field=field, hint="remove the line or fill it in")
    return value.strip()


# ---------------------------------------------------------------------------------------------
# Chat datasets


def detect_chat_format(record: dict[str, Any]) -> ChatFormat | None:
    """Chat format a single JSON record is written in, or None if it matches none."""
    for fmt, keys in CHAT_FORMAT_KEYS.items():
        if all(k in record for k in keys):
            return fmt
    return None


def detect_format(path: Path) -> ChatFormat | PairFormat:
    """Format of a dataset file, judged from its extension/header and first record."""
    path = Path(path)
    if path.suffix.lower() in (".csv", ".tsv"):
        return "pairs-csv"
    for lineno, obj in iter_jsonl(path):
        fmt = detect_chat_format(obj)
        if fmt is not None:
            return fmt
        if any(k in obj for k in QUERY_COLUMNS) and POSITIVE_COLUMN in obj:
            return "pairs-jsonl"
        raise DatasetError(
            str(path),
            f"unrecognised record with keys {sorted(obj)}",
            line=lineno,
            hint=_CHAT_HINT + '; or for pairs: {"query": "...", "positive": "..."}',
        )
    raise DatasetError(str(path), "file is empty", hint="add at least one example")


def _chat_turns(path: Path, line: int, obj: dict[str, Any], fmt: ChatFormat) -> Messages:
    """Raw (role, content) turns of one record, not yet validated."""
    if fmt == "alpaca":
        instruction = _text(path, line, obj, "instruction")
        extra = _text(path, line, obj, "input", required=False)
        user = f"{instruction}\n\n{extra}" if extra else instruction
        msgs = [
            {"role": "user", "content": user},
            {"role": "assistant", "content": _text(path, line, obj, "output")},
        ]
        system = _text(path, line, obj, "system", required=False)
        return [{"role": "system", "content": system}, *msgs] if system else msgs
    if fmt == "prompt-completion":
        return [
            {"role": "user", "content": _text(path, line, obj, "prompt")},
            {"role": "assistant", "content": _text(path, line, obj, "completion")},
        ]
    field = "messages" if fmt == "openai" else "conversations"
    turns = obj[field]
    if not isinstance(turns, list) or not turns:
        raise DatasetError(str(path), "expected a non-empty list of turns", line=line, field=field, hint=_CHAT_HINT)
    out: Messages = []
    for i, turn in enumerate(turns):
        where = f"{field}[{i}]"
        if not isinstance(turn, dict):
            raise DatasetError(str(path), "each turn must be a JSON object", line=line, field=where)
        if "from" in turn:  # ShareGPT spelling (also tolerated inside "messages")
            raw_role, content_key = turn["from"], "value"
            role = _SHAREGPT_ROLES.get(str(raw_role).lower())
        else:
            raw_role, content_key = turn.get("role"), "content"
            role = raw_role if raw_role in ROLES else None
        if role is None:
            allowed = sorted(_SHAREGPT_ROLES) if "from" in turn else list(ROLES)
            raise DatasetError(
                str(path),
                f"unknown role {raw_role!r}",
                line=line,
                field=f"{where}.{'from' if 'from' in turn else 'role'}",
                hint=f"use one of {', '.join(allowed)}",
            )
        content = turn.get(content_key)
        if not isinstance(content, str) or not content.strip():
            raise DatasetError(
                str(path),
                "missing or empty text" if not isinstance(content, list) else "content lists are not supported",
                line=line,
                field=f"{where}.{content_key}",
                hint="every turn needs non-empty plain-text content",
            )
        out.append({"role": role, "content": content.strip()})
    return out


def _validate_turns(path: Path, line: int, msgs: Messages, field: str) -> None:
    """Order rules chat templates rely on: optional leading system turn, ≥1 assistant turn."""
    for i, m in enumerate(msgs):
        if m["role"] == "system" and i != 0:
            raise DatasetError(
                str(path),
                "a system turn may only come first",
                line=line,
                field=f"{field}[{i}]",
                hint="move the system message to the start of the conversation",
            )
    if not any(m["role"] == "assistant" for m in msgs):
        raise DatasetError(
            str(path),
            "conversation has no assistant turn, so there is nothing to learn from",
            line=line,
            field=field,
            hint="add the expected answer as an assistant turn",
        )
    if msgs[0]["role"] == "assistant" or (msgs[0]["role"] == "system" and msgs[1:2] and msgs[1]["role"] == "assistant"):
        raise DatasetError(
            str(path),
            "conversation starts with an assistant turn",
            line=line,
            field=field,
            hint="start with a user turn (after an optional system turn)",
        )


def read_chat_dataset(path: Path) -> list[Messages]:
    """Read a chat JSONL file in any supported format as OpenAI-style ``messages`` lists."""
    path = Path(path)
    fmt: ChatFormat | None = None
    first_line = 0
    out: list[Messages] = []
    for lineno, obj in iter_jsonl(path):
        record_fmt = detect_chat_format(obj)
        if fmt is None:
            if record_fmt is None:
                raise DatasetError(
                    str(path),
                    f"unrecognised chat record with keys {sorted(obj)}",
                    line=lineno,
                    hint=_CHAT_HINT,
                )
            fmt, first_line = record_fmt, lineno
        elif record_fmt != fmt:
            missing = [k for k in CHAT_FORMAT_KEYS[fmt] if k not in obj]
            raise DatasetError(
                str(path),
                f"record is not in the '{fmt}' format detected on line {first_line}",
                line=lineno,
                field=missing[0] if missing else None,
                hint=f"every line needs the field(s) {', '.join(CHAT_FORMAT_KEYS[fmt])}; do not mix formats",
            )
        msgs = _chat_turns(path, lineno, obj, fmt)
        _validate_turns(path, lineno, msgs, CHAT_FORMAT_KEYS[fmt][0])
        out.append(msgs)
    if not out:
        raise DatasetError(str(path), "file is empty", hint="add at least one conversation, " + _CHAT_HINT)
    return out


# ---------------------------------------------------------------------------------------------
# Pair datasets


def _pairs_header_error(path: Path, found: list[str], line: int = 1) -> DatasetError:
    return DatasetError(
        str(path),
        f"wrong columns: expected 'query' (or 'anchor') and 'positive', optionally 'negative' or "
        f"'negative_1'..'negative_n'; found {found}",
        line=line,
        hint="rename the columns, e.g. header line: query,positive,negative",
    )


def _csv_pairs(path: Path) -> Iterator[tuple[int, Pair]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            return
        except csv.Error as exc:
            raise DatasetError(str(path), f"unreadable CSV header ({exc})", line=1) from None
        query_col = next((c for c in QUERY_COLUMNS if c in header), None)
        if query_col is None or POSITIVE_COLUMN not in header:
            raise _pairs_header_error(path, header)
        unknown = [h for h in header if h not in (query_col, POSITIVE_COLUMN) and not _NEGATIVE.match(h)]
        if unknown:
            raise _pairs_header_error(path, header)
        q_idx, p_idx = header.index(query_col), header.index(POSITIVE_COLUMN)
        neg_idx = [i for i, h in enumerate(header) if _NEGATIVE.match(h)]
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise DatasetError(str(path), f"malformed CSV ({exc})", line=start) from None
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DatasetError(
                    str(path),
                    f"row has {len(row)} cells but the header has {len(header)}",
                    line=start,
                    hint="quote cells that contain commas or line breaks",
                )
            for idx, name in ((q_idx, query_col), (p_idx, POSITIVE_COLUMN)):
                if not row[idx].strip():
                    raise DatasetError(
                        str(path), "empty text", line=start, field=name, hint="fill it in or drop the row"
                    )
            negatives = tuple(row[i].strip() for i in neg_idx if row[i].strip())
            yield start, Pair(row[q_idx].strip(), row[p_idx].strip(), negatives)


def _jsonl_pairs(path: Path) -> Iterator[tuple[int, Pair]]:
    for lineno, obj in iter_jsonl(path):
        query_col = next((c for c in QUERY_COLUMNS if c in obj), None)
        if query_col is None or POSITIVE_COLUMN not in obj:
            raise _pairs_header_error(path, sorted(obj), line=lineno)
        negatives: list[str] = []
        for key in sorted((k for k in obj if _NEGATIVE.match(k) or k == "negatives"), key=_negative_order):
            value = obj[key]
            items = value if isinstance(value, list) else [value]
            for item in items:
                if not isinstance(item, str):
                    raise DatasetError(str(path), f"expected text, found {type(item).__name__}", line=lineno, field=key)
                if item.strip():
                    negatives.append(item.strip())
        pair = Pair(_text(path, lineno, obj, query_col), _text(path, lineno, obj, POSITIVE_COLUMN), tuple(negatives))
        yield lineno, pair


def _negative_order(key: str) -> tuple[int, int]:
    return (0, 0) if key in ("negative", "negatives") else (1, int(key.rsplit("_", 1)[1]))


def load_pairs(path: Path) -> PairsFile:
    """Read a CSV/JSONL pairs file; exact duplicate (query, positive) pairs are dropped and counted."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(str(path), "file not found", hint="check the path (or upload the file first)")
    fmt: PairFormat = "pairs-csv" if path.suffix.lower() in (".csv", ".tsv") else "pairs-jsonl"
    rows = _csv_pairs(path) if fmt == "pairs-csv" else _jsonl_pairs(path)
    seen: set[tuple[str, str]] = set()
    pairs: list[Pair] = []
    duplicates = 0
    for _line, pair in rows:
        key = (pair.query, pair.positive)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        pairs.append(pair)
    if not pairs:
        raise DatasetError(str(path), "file holds no pairs", hint="add rows with a query and its positive passage")
    if duplicates:
        log.warning("%s: dropped %d duplicate (query, positive) pairs", path, duplicates)
    return PairsFile(pairs=pairs, format=fmt, duplicates_dropped=duplicates)


def read_pairs(path: Path) -> list[Pair]:
    """Pairs of a CSV/JSONL file (duplicates dropped; use :func:`load_pairs` for the count)."""
    return load_pairs(path).pairs
