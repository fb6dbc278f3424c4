"""The CSV bulk format: one referral per row, a flat subset of ``Referral`` (pure).

UTF-8 (a BOM is allowed), comma-separated, RFC 4180 quoting, a header row naming
the columns in any order. Rows are numbered as records with the header as row 1.
Empty cells mean "absent".

=====================  ========  ==================================================
column                 required  maps to
=====================  ========  ==================================================
reporter_reference     yes       ``reporter.reference`` (unique per reporter)
incident_type          yes       ``incident.type`` (csam, grooming, ...)
summary                yes       ``incident.summary``
url                    yes       ``urls[0].url``
hosting_country        no        ``urls[0].hosting.country`` (decides the jurisdiction)
hosting_ip             no        ``urls[0].hosting.ip``
hash_type              no        ``items[0].hashes[0].algorithm`` (md5, sha1, sha256, pdq)
hash_value             no        ``items[0].hashes[0].value`` (lowercase hex)
classification         with hash ``items[0].classification`` (baseline, national, ...)
media_type             no        ``items[0].media_type`` (default ``image``)
priority               no        ``urgency.priority`` (default ``routine``)
urgency_reason         if urgent ``urgency.reason``
handling_code          yes       ``handling.code`` (H0..H3)
restriction            if H3     ``handling.restriction``
tlp                    yes       ``handling.tlp`` (RED, AMBER+STRICT, AMBER, GREEN, CLEAR)
source_reliability     no        ``handling.source_reliability`` (default ``X``: not assessed)
information_accuracy   no        ``handling.information_accuracy`` (default ``4``: cannot be judged)
delete_after           yes       ``delete_after`` (YYYY-MM-DD)
jurisdiction           no        the envelope's jurisdiction (default: from the hosting country)
=====================  ========  ==================================================

An item is added when ``hash_type``/``hash_value`` are given (both or neither),
seen at the row's URL. :func:`parse_csv` returns every valid row and every
invalid one with its row number and the first problem; the drop folder sends a
file only when all its rows are valid.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any, Final

import pydantic

from adapters._errors import InputError
from adapters._model import Submission, _submission
from schemas import first_error

__all__ = ["CSV_COLUMNS", "REQUIRED_COLUMNS", "CsvBatch", "RowError", "parse_csv"]

REQUIRED_COLUMNS: Final = (
    "reporter_reference",
    "incident_type",
    "summary",
    "url",
    "handling_code",
    "tlp",
    "delete_after",
)
CSV_COLUMNS: Final = (
    *REQUIRED_COLUMNS,
    "hosting_country",
    "hosting_ip",
    "hash_type",
    "hash_value",
    "classification",
    "media_type",
    "priority",
    "urgency_reason",
    "restriction",
    "source_reliability",
    "information_accuracy",
    "jurisdiction",
)


@dataclass(frozen=True, slots=True)
class RowError:
    row: int
    """Record number, the header being row 1."""
    message: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.message}"


@dataclass(frozen=True, slots=True)
class CsvBatch:
    rows: tuple[tuple[int, Submission], ...]
    errors: tuple[RowError, ...]


def _referral_dict(cell: dict[str, str]) -> dict[str, Any]:
    hosting = {
        k: v for k, v in (("country", cell["hosting_country"]), ("ip", cell["hosting_ip"])) if v
    }
    url: dict[str, Any] = {"url": cell["url"]}
    if hosting:
        url["hosting"] = hosting
    ref: dict[str, Any] = {
        "reporter": {"reference": cell["reporter_reference"]},
        "incident": {"type": cell["incident_type"], "summary": cell["summary"]},
        "urgency": {"priority": cell["priority"] or "routine"},
        "urls": [url],
        "handling": {
            "code": cell["handling_code"],
            "tlp": cell["tlp"],
            "source_reliability": cell["source_reliability"] or "X",
            "information_accuracy": cell["information_accuracy"] or "4",
        },
        "delete_after": cell["delete_after"],
    }
    if cell["urgency_reason"]:
        ref["urgency"]["reason"] = cell["urgency_reason"]
    if cell["restriction"]:
        ref["handling"]["restriction"] = cell["restriction"]
    if bool(cell["hash_type"]) != bool(cell["hash_value"]):
        raise InputError("hash_type and hash_value go together")
    if cell["hash_type"]:
        if not cell["classification"]:
            raise InputError("a hashed item needs a classification")
        ref["items"] = [
            {
                "media_type": cell["media_type"] or "image",
                "hashes": [{"algorithm": cell["hash_type"], "value": cell["hash_value"]}],
                "classification": cell["classification"],
                "url_index": 0,
            }
        ]
    elif cell["classification"] or cell["media_type"]:
        raise InputError("classification and media_type describe a hashed item: add the hash")
    return ref


def _check_header(names: list[str]) -> None:
    unknown = sorted(set(names) - set(CSV_COLUMNS))
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    parts = []
    if unknown:
        parts.append(f"unknown columns {', '.join(unknown)}")
    if missing:
        parts.append(f"missing columns {', '.join(missing)}")
    if len(set(names)) != len(names):
        parts.append("a column appears twice")
    if parts:
        raise InputError(f"row 1: {'; '.join(parts)}")


def parse_csv(data: bytes) -> CsvBatch:
    """Parse a CSV bulk file; raises ``InputError`` only for an unusable header."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError("not UTF-8") from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise InputError("empty file: expected a header row") from None
    except csv.Error as exc:
        raise InputError(f"row 1: {exc}") from exc
    names = [h.strip().lower() for h in header]
    _check_header(names)
    rows: list[tuple[int, Submission]] = []
    errors: list[RowError] = []
    row = 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(RowError(row + 1, f"unreadable CSV: {exc}"))
            break
        row += 1
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(names):
            errors.append(RowError(row, f"{len(values)} cells, the header has {len(names)}"))
            continue
        cell = dict.fromkeys(CSV_COLUMNS, "")
        cell.update({n: v.strip() for n, v in zip(names, values, strict=True)})
        try:
            obj = _referral_dict(cell)
            rows.append((row, _submission({"referral": obj}, cell["jurisdiction"] or None)))
        except pydantic.ValidationError as exc:
            errors.append(RowError(row, first_error(exc)))
        except InputError as exc:
            errors.append(RowError(row, exc.detail))
    if not rows and not errors:
        raise InputError("no data rows")
    return CsvBatch(tuple(rows), tuple(errors))
