"""The AsyncAPI 3.0 description of every topic: ``python -m broker.asyncapi [--check]``.

Generated from the models and the topic plan, committed as ``docs/asyncapi.json``,
kept in sync by a unit test and validated by the official AsyncAPI parser
(``@asyncapi/parser``, in ``tests/asyncapi/``) in the integration suite. It says,
per topic: the name pattern, the record key, the headers, the message schemas,
who publishes and who subscribes. Envelopes are opaque bytes (``schemas/ENVELOPE.md``);
their clear header and the encrypted payloads are given as component schemas.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

import schemas
from adapters.kafka import TopicSettings
from broker.audit import AuditRecord
from broker.topics import plan
from broker.tracker import Handover
from keys import SignedDirectory
from schemas import (
    SCHEMA_VERSION,
    CaseAck,
    DeconflictionNotice,
    Directory,
    EnvelopeHeader,
    Receipt,
    Referral,
    StatusEvent,
)

__all__ = ["ASYNCAPI_PATH", "document", "main"]

ASYNCAPI_PATH = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.json"
_MODELS: tuple[type[BaseModel], ...] = (
    EnvelopeHeader,
    Referral,
    Receipt,
    CaseAck,
    StatusEvent,
    DeconflictionNotice,
    AuditRecord,
    Handover,
    SignedDirectory,
    Directory,
)
_REF = "#/components/schemas/{model}"


def _asyncapi_schema(node: Any) -> Any:
    """Pydantic's JSON Schema, as an AsyncAPI Schema Object: the discriminator is a
    property name there, not OpenAPI's ``{propertyName, mapping}`` object."""
    if isinstance(node, dict):
        out = {k: _asyncapi_schema(v) for k, v in node.items()}
        if isinstance(out.get("discriminator"), dict):
            out["discriminator"] = out["discriminator"]["propertyName"]
        return out
    if isinstance(node, list):
        return [_asyncapi_schema(v) for v in node]
    return node


def _schemas() -> dict[str, Any]:
    """Every model's JSON Schema under components/schemas (refs rewritten there)."""
    top, defs = models_json_schema([(m, "validation") for m in _MODELS], ref_template=_REF)
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    for (model, _), schema in top.items():
        schemas.setdefault(model.__name__, schema)
    return _asyncapi_schema(dict(sorted(schemas.items())))  # type: ignore[no-any-return]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _headers(**fields: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {k: {"type": "string", "description": v} for k, v in fields.items()},
    }


_SIGNED = {
    "crb-signer": "Key id of the service key (directory `services`) that signed the value.",
    "crb-signature": "Base64 Ed25519 signature over context || value (see the message).",
}
_TRACE = {"traceparent": "W3C Trace Context; a correlation key, never trusted."}


def _kafka_key(description: str) -> dict[str, Any]:
    return {"kafka": {"key": {"type": "string", "description": description}}}


def _messages() -> dict[str, Any]:
    case_key = _kafka_key("The case id (UTF-8 of its canonical UUID): a case stays in order.")
    return {
        "Envelope": {
            "name": "Envelope",
            "title": "A sealed envelope (referral, receipt or case acknowledgement)",
            "contentType": "application/octet-stream",
            "description": "The bytes of schemas/ENVELOPE.md: a signed clear header "
            "(components/schemas/EnvelopeHeader) and a payload encrypted to each recipient "
            "(Referral, Receipt or CaseAck per the header's message_type).",
            "payload": {"type": "string", "format": "binary"},
            "headers": _headers(
                **{
                    "crb-message-id": "The header's message id (set by the router on inboxes).",
                    "crb-sender": "The header's sender (inboxes).",
                    "crb-message-type": "referral, receipt or case_ack (inboxes).",
                },
                **_TRACE,
            ),
            "bindings": case_key,
        },
        "DeconflictionNotice": {
            "name": "DeconflictionNotice",
            "title": "A deconfliction notice from the tracker",
            "contentType": "application/json",
            "description": "Signature context `crb/tracker-notice/v1\\0`. Distinguished from "
            "envelopes by the header crb-record = notice.",
            "payload": _ref("DeconflictionNotice"),
            "headers": _headers(
                **{
                    "crb-record": "Always `notice`.",
                    "crb-notice": "already_referred or referred_again.",
                },
                **_SIGNED,
            ),
            "bindings": case_key,
        },
        "StatusEvent": {
            "name": "StatusEvent",
            "title": "A handover changed state",
            "contentType": "application/json",
            "description": "Signature context `crb/status/v1\\0` (router or tracker key). A "
            "null value (tombstone, header crb-forgotten) ends a forgotten handover.",
            "payload": _ref("StatusEvent"),
            "headers": _headers(
                **{
                    "crb-state": "The event's state.",
                    "crb-source": "`tracker` for the tracker's own timer events.",
                },
                **_SIGNED,
                **_TRACE,
            ),
            "bindings": _kafka_key("<message_id>/<recipient or ->: compaction key."),
        },
        "TrackerState": {
            "name": "TrackerState",
            "title": "The tracker's state of one handover",
            "contentType": "application/json",
            "description": "Signature context `crb/tracker-state/v1\\0` (tracker key). "
            "Tombstones as on the status topic.",
            "payload": _ref("Handover"),
            "headers": _headers(**{"crb-state": "The handover's state."}, **_SIGNED),
            "bindings": _kafka_key("<message_id>/<recipient or ->: compaction key."),
        },
        "AuditRecord": {
            "name": "AuditRecord",
            "title": "One link of a hash-chained audit chain",
            "contentType": "application/json",
            "description": "The router signs the record's hash (context `crb/audit/v1\\0`, "
            "fields signer and signature); no payload is ever recorded.",
            "payload": _ref("AuditRecord"),
            "bindings": _kafka_key("The chain id: `<outbox topic>/<partition>`."),
        },
        "DeadLetter": {
            "name": "DeadLetter",
            "title": "A record the router refused, with its original bytes",
            "contentType": "application/octet-stream",
            "description": "A batch whose records the client cannot decode (a header "
            "key that is not UTF-8: Kafka takes any bytes) is dead-lettered once, as "
            "`malformed` at the batch's last offset, from the record that failed to the "
            "end of the batch; its value is then JSON (`unreadable`, `first_offset`, "
            "`last_offset`, `error`) instead of bytes that could not be read.",
            "payload": {"type": "string", "format": "binary"},
            "headers": _headers(
                **{
                    "crb-reason": "A reason code of schemas.DEAD_LETTER_REASONS.",
                    "crb-source-topic": "The outbox it was read from.",
                    "crb-source-partition": "Its partition.",
                    "crb-source-offset": "Its offset.",
                    "crb-rejected-at": "When (ISO 8601).",
                    "crb-message-id": "The claimed message id, when the header parsed.",
                    "crb-truncated": "`1` when the value was cut to the topic's limit.",
                    "crb-original-size": "The original size in bytes, when truncated.",
                },
                **_TRACE,
            ),
            "bindings": _kafka_key("The original record's key (its first 4 KiB when longer)."),
        },
        "OperatorAction": {
            "name": "OperatorAction",
            "title": "An operator's action, recorded by the tracker",
            "contentType": "application/json",
            "description": "Signature context `crb/operator-action/v1\\0` (tracker key).",
            "payload": {
                "type": "object",
                "properties": {
                    "action": {"type": "string", "enum": ["redrive"]},
                    "topic": {"type": "string"},
                    "partition": {"type": "integer"},
                    "offset": {"type": "integer"},
                    "reason": {"type": "string"},
                    "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    "outbox": {"type": "string"},
                    "outbox_offset": {"type": "integer"},
                    "by": {"type": "string"},
                    "at": {"type": "string", "format": "date-time"},
                },
                "required": ["action", "topic", "partition", "offset", "by", "at"],
            },
            "headers": _headers(**{"crb-action": "`redrive`."}, **_SIGNED),
            "bindings": _kafka_key("<dead-letter partition>/<offset>."),
        },
        "SignedDirectory": {
            "name": "SignedDirectory",
            "title": "The federation directory, signed by the root key",
            "contentType": "application/json",
            "description": "Root signature: Ed25519 over `crb/directory/v1\\0` || the "
            "canonical JSON of `directory` (schemas/ENVELOPE.md section 3).",
            "payload": _ref("SignedDirectory"),
            "headers": _headers(**{"crb-directory-version": "The directory's version."}),
            "bindings": _kafka_key("The federation id (compaction: the latest version)."),
        },
    }


_PARAMS = {
    "prefix": {"description": "The topic prefix of the federation (default `crb`).",
               "default": "crb"},
    "participant": {"description": "A participant id of the directory, e.g. `nl.hotline`."},
}  # fmt: skip


def _channel(address: str, messages: list[str], description: str, config: dict[str, str]) -> Any:
    channel: dict[str, Any] = {
        "address": address,
        "description": description,
        "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in messages},
        "parameters": {
            p: {"$ref": f"#/components/parameters/{p}"} for p in _PARAMS if "{" + p + "}" in address
        },
    }
    topic_config: dict[str, Any] = {}
    if "cleanup.policy" in config:
        topic_config["cleanup.policy"] = config["cleanup.policy"].split(",")
    if "retention.ms" in config:
        topic_config["retention.ms"] = int(config["retention.ms"])
    if "max.message.bytes" in config:
        topic_config["max.message.bytes"] = int(config["max.message.bytes"])
    if topic_config:
        channel["bindings"] = {"kafka": {"topicConfiguration": topic_config}}
    return channel


def _channels() -> dict[str, Any]:
    settings = TopicSettings()
    example = Path(schemas.__file__).parent / "examples" / "directory.json"
    sample = Directory.model_validate_json(example.read_bytes())  # any directory will do
    configs = {t.name.split(".", 1)[1]: dict(t.config) for t in plan(sample, settings)}
    outbox = {"retention.ms": str(settings.outbox_retention_ms),
              "max.message.bytes": str(settings.message_max_bytes)}  # fmt: skip
    inbox = {"retention.ms": str(settings.inbox_retention_ms),
             "max.message.bytes": str(settings.message_max_bytes)}  # fmt: skip
    return {
        "outbox": _channel(
            "{prefix}.outbox.{participant}", ["Envelope"],
            "A participant's outbox: only it may write (Kafka ACL); only the router reads.",
            outbox),
        "inbox": _channel(
            "{prefix}.inbox.{participant}", ["Envelope", "DeconflictionNotice"],
            "A participant's inbox: only the router (envelopes) and the tracker (notices) "
            "write; only the participant reads.", inbox),
        "deadLetters": _channel(
            "{prefix}.dlq", ["DeadLetter"],
            "Every record the router refused, with its original bytes and reason.",
            configs["dlq"]),
        "audit": _channel(
            "{prefix}.audit", ["AuditRecord"],
            "The router's hash-chained decisions (one chain per outbox partition).",
            configs["audit"]),
        "status": _channel(
            "{prefix}.status", ["StatusEvent"],
            "Handover status events, compacted to one per handover.", configs["status"]),
        "trackerState": _channel(
            "{prefix}.tracker", ["TrackerState"],
            "The tracker's own state, compacted to one record per handover.",
            configs["tracker"]),
        "actions": _channel(
            "{prefix}.actions", ["OperatorAction"],
            "Operator actions the tracker carried out (a dead letter redriven).",
            configs["actions"]),
        "directory": _channel(
            "{prefix}.directory", ["SignedDirectory"],
            "Every signed directory version; only the federation admin writes.",
            configs["directory"]),
    }  # fmt: skip


def _op(action: str, channel: str, messages: list[str], who: str, what: str) -> dict[str, Any]:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in messages],
        "summary": f"{who}: {what}",
        "x-crb-principal": who,
    }


def _operations() -> dict[str, Any]:
    return {
        "participantSends": _op("send", "outbox", ["Envelope"], "participant adapter",
                                "seals referrals, receipts and case acknowledgements"),
        "routerReadsOutboxes": _op("receive", "outbox", ["Envelope"], "crb-router",
                                   "verifies and routes (read_committed, exactly once)"),
        "routerForwards": _op("send", "inbox", ["Envelope"], "crb-router",
                              "forwards the exact bytes to each recipient's inbox"),
        "trackerNotifies": _op("send", "inbox", ["DeconflictionNotice"], "crb-tracker",
                               "tells both participants of a deconfliction match"),
        "participantReceives": _op("receive", "inbox", ["Envelope", "DeconflictionNotice"],
                                   "participant adapter",
                                   "opens, delivers, answers with a signed receipt"),
        "routerDeadLetters": _op("send", "deadLetters", ["DeadLetter"], "crb-router",
                                 "refused records with their reason"),
        "trackerReadsDeadLetters": _op("receive", "deadLetters", ["DeadLetter"], "crb-tracker",
                                       "lists dead letters for operators"),
        "trackerRedrives": _op("send", "outbox", ["Envelope"], "crb-tracker",
                               "puts a dead letter's bytes back on an operator's word"),
        "routerAudits": _op("send", "audit", ["AuditRecord"], "crb-router",
                            "appends each decision to its chain"),
        "auditReaders": _op("receive", "audit", ["AuditRecord"], "crb-router, crb audit verify",
                            "rebuild memory; verify the chains"),
        "routerReportsStatus": _op("send", "status", ["StatusEvent"], "crb-router",
                                   "routed, dead-lettered, received, decisions"),
        "trackerReportsStatus": _op("send", "status", ["StatusEvent"], "crb-tracker",
                                    "overdue, escalated, failed, closed"),
        "trackerReadsStatus": _op("receive", "status", ["StatusEvent"], "crb-tracker",
                                  "folds every handover's state"),
        "trackerWritesState": _op("send", "trackerState", ["TrackerState"], "crb-tracker",
                                  "its state, in the same transaction as the offsets"),
        "trackerReadsState": _op("receive", "trackerState", ["TrackerState"], "crb-tracker",
                                 "rebuilds at start"),
        "trackerRecordsActions": _op("send", "actions", ["OperatorAction"], "crb-tracker",
                                     "records who redrove what"),
        "trackerReadsActions": _op("receive", "actions", ["OperatorAction"], "crb-tracker",
                                   "marks redriven dead letters"),
        "adminPublishesDirectory": _op("send", "directory", ["SignedDirectory"], "crb-admin",
                                       "publishes each signed version"),
        "everyoneFollowsDirectory": _op("receive", "directory", ["SignedDirectory"],
                                        "every service and adapter",
                                        "follows the live directory (root-verified)"),
    }  # fmt: skip


def document() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document."""
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Transnational case-referral broker: Kafka topics",
            "version": f"{SCHEMA_VERSION}.0.0",
            "description": "Every topic of a federation: name pattern, record key, "
            "headers, message schemas, who publishes and who subscribes. The envelope "
            "format is schemas/ENVELOPE.md; generated by `python -m broker.asyncapi`.",
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The development Kafka of `crb kafka up` (SASL/SCRAM-SHA-512, "
                "ACLs on): one principal per participant and service.",
                "security": [{"$ref": "#/components/securitySchemes/scram"}],
            }
        },
        "channels": _channels(),
        "operations": _operations(),
        "components": {
            "schemas": _schemas(),
            "messages": _messages(),
            "parameters": _PARAMS,
            "securitySchemes": {
                "scram": {
                    "type": "scramSha512",
                    "description": "Kafka SASL/SCRAM-SHA-512; ACLs from the directory.",
                }
            },
        },
    }


def render() -> str:
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m broker.asyncapi", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = ASYNCAPI_PATH.read_text("utf-8") if ASYNCAPI_PATH.exists() else ""
        if current != text:
            print(f"{ASYNCAPI_PATH} is out of date: python -m broker.asyncapi", file=sys.stderr)
            return 1
        return 0
    ASYNCAPI_PATH.write_text(text, "utf-8")
    print(f"wrote {ASYNCAPI_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
