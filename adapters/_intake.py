"""The intake API: a participant's case system (or an industry reporter's) pushes
referrals over HTTP to the participant's own adapter, which seals and sends them.

It runs where the keys are — at the participant — so a referral leaves the
premises only sealed. ``create_intake`` builds the FastAPI app; ``crb adapter
serve`` serves it (loopback by default, TLS when bound elsewhere).

- ``POST /referrals[?jurisdiction=NL]`` — a referral, or the wrapper ``{"referral":
  ..., "jurisdiction": "NL", "case_id": "<uuid7>"}`` (the drop folder's formats and
  rules: hosting country filled by lookup, jurisdiction derived when not named). ``202`` once Kafka
  acknowledged it, with the message id and a status URL (``Location``).
- ``Idempotency-Key`` (1 to 200 characters): the envelope is sealed, stored,
  *then* sent, and the answer stored; the same key with the same body returns the
  same message id (``Idempotent-Replayed: true``) and sends nothing new — across
  restarts, and also when the adapter died between Kafka's acknowledgement and the
  HTTP answer (the stored envelope is sent again byte for byte: the router refuses
  the second copy as a duplicate, one message is delivered). The same key with
  another body is ``422``.
- ``POST /referrals:batch`` — ``{"items": [...]}``, at most :data:`MAX_BATCH`:
  every item is validated first; valid ones are sealed and sent together; the
  answer lists each item (``202`` with its message id, ``422`` with its problem,
  ``503`` if Kafka did not take it). With an ``Idempotency-Key``, item ``i`` uses
  ``<key>#<i>``.
- ``GET /referrals/{message_id}``, ``GET /referrals?reference=R`` — what this adapter
  knows of its own referrals: sent when, to whom, who has receipted, escalation.
- ``GET /inbox``, ``GET /inbox/{message_id}`` — what was delivered to this
  participant (receipts were sent by the inbox loop); ``POST
  /messages/{message_id}/accept|reject|move|action|close`` — a signed case decision
  back to the referral's sender (a move forwards the referral first).
- Errors are RFC 9457 problem details (``application/problem+json``), validation
  errors naming each field (``errors[].field``); ``401`` without a valid key
  (``WWW-Authenticate: Bearer``), ``403`` for another participant's key, ``413``
  over ``max_body`` bytes, ``415`` not JSON, ``429`` over the rate limit
  (``Retry-After``), ``503`` when Kafka does not acknowledge in time.
- Keys: ``participant:<id>`` bearer tokens of this participant (``adapters._tokens``,
  stored hashed in ``<state>/intake-keys.json``; ``crb adapter key issue|list|revoke``).
  Each key has its own token bucket (``rate_per_s``, ``burst``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID

import structlog
from fastapi import FastAPI, Header, Query, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import models_json_schema

from adapters._errors import InputError, SendError
from adapters._model import Submission, _submission
from adapters._sender import Sender
from adapters._state import IdempotentSend, PendingReferral, RefKind, StateStore
from adapters._tokens import Access, Caller, Refusal
from schemas import (
    Accepted as AcceptedDecision,
)
from schemas import (
    Actioned,
    ActionType,
    Clock,
    Closed,
    Decision,
    MessageType,
    Referral,
    Rejected,
    RejectReason,
    utcnow,
)

__all__ = ["MAX_BATCH", "IntakeLimits", "create_intake"]

log = structlog.get_logger("crb.intake")

MAX_BATCH = 500
PROBLEM = "application/problem+json"
_TYPES = "https://crb.example.org/problems/"


@dataclass(frozen=True)
class IntakeLimits:
    """Request size and per-key rate limits."""

    max_body: int = 4 << 20
    """Largest request body in bytes (a batch of referrals; one envelope is ≤ 1 MiB)."""
    rate_per_s: float = 100.0
    """Referrals per second a key may submit, sustained (a batch counts each item)."""
    burst: float = 2.0 * MAX_BATCH
    """How many at once: two full batches."""


class Accepted(BaseModel):
    """A referral Kafka acknowledged."""

    model_config = ConfigDict(extra="forbid")

    message_id: UUID
    case_id: UUID
    jurisdiction: str
    status_url: str


class BatchItem(BaseModel):
    index: int
    status: int
    message_id: UUID | None = None
    case_id: UUID | None = None
    status_url: str | None = None
    problem: dict[str, Any] | None = None


class BatchAnswer(BaseModel):
    accepted: int
    refused: int
    items: list[BatchItem]


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: Annotated[list[Any], Field(min_length=1, max_length=MAX_BATCH)]
    """Each a referral or a wrapper, checked one by one (a bad one fails alone)."""


class InboxEntry(BaseModel):
    """A message delivered to this participant (its clear facts)."""

    message_id: UUID
    message_type: str
    sender: str
    case_id: UUID
    jurisdiction: str
    category: str
    priority: str
    in_reply_to: UUID | None = None
    delivered_at: datetime
    receipt_sent_at: datetime | None = None
    document_url: str


class DecisionRequest(BaseModel):
    """A case decision about a received referral (``POST /messages/{id}/{kind}``):
    ``reference`` to accept, ``reason`` to reject, ``to_jurisdiction`` to move,
    ``action`` (and ``url_indexes``, ``actioned_at``) for an action; ``detail``:
    free text, never case data."""

    model_config = ConfigDict(extra="forbid")

    reference: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    reason: RejectReason | None = None
    to_jurisdiction: Annotated[str, Field(pattern="^[A-Z]{2}$")] | None = None
    action: ActionType | None = None
    url_indexes: list[Annotated[int, Field(ge=0)]] = []
    actioned_at: datetime | None = None
    detail: Annotated[str, Field(max_length=2000)] | None = None


class DecisionSent(BaseModel):
    message_ids: list[UUID]
    """The case acknowledgement (and, for a move, the referral forwarded first)."""


DecisionKindPath = Literal["accept", "reject", "move", "action", "close"]


class ReferralStatus(BaseModel):
    """What this adapter knows of one of its own referrals."""

    message_id: UUID
    case_id: UUID | None = None
    reference: str | None = None
    recipients: list[str] = []
    answered: list[str] = []
    """Recipients whose signed receipt came back."""
    waiting_for: list[str] = []
    sent_at: datetime | None = None
    redeliveries: int = 0
    escalated_to: str | None = None
    escalation_id: UUID | None = None


def problem(status: int, title: str, detail: str, *, kind: str, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem details response."""
    body = {"type": _TYPES + kind, "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _field_errors(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """Each invalid field and what is wrong — never the input value (case data)."""
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in err["loc"])
        out.append(
            {"field": f"{prefix}{where}" if where else prefix or "body", "message": err["msg"]}
        )
    return out


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class _RateLimit:
    limits: IntakeLimits
    buckets: dict[str, _Bucket] = field(default_factory=dict)

    def wait(self, client: str, cost: float = 1.0) -> float:
        """0 if ``client`` may go now (and charge it), else seconds until it may."""
        now = time.monotonic()
        b = self.buckets.setdefault(client, _Bucket(self.limits.burst, now))
        b.tokens = min(self.limits.burst, b.tokens + (now - b.at) * self.limits.rate_per_s)
        b.at = now
        if b.tokens >= cost:
            b.tokens -= cost
            return 0.0
        return (cost - b.tokens) / self.limits.rate_per_s


def _request_digest(item: object) -> str:
    return hashlib.sha256(json.dumps(item, sort_keys=True).encode()).hexdigest()


class _Intake:
    """The endpoints' work; :func:`create_intake` routes to it."""

    def __init__(
        self,
        sender: Sender,
        store: StateStore,
        access: Access,
        limits: IntakeLimits,
        clock: Clock,
        hook: Callable[[str, UUID], None],
        inbox_folder: Path | None = None,
    ) -> None:
        self.sender = sender
        self.store = store
        self.access = access
        self.limits = limits
        self.clock = clock
        self.hook = hook
        self.participant = sender.identity.participant
        self.rate = _RateLimit(limits)
        self.inbox_folder = inbox_folder

    # -- the gate ----------------------------------------------------------------------

    def authorise(self, request: Request) -> Caller | JSONResponse:
        found = self.access.check(request.headers.get("authorization"))
        if isinstance(found, Refusal):
            kind = "unauthenticated" if found.status == 401 else "forbidden"
            response = problem(int(found.status), "Not allowed", found.detail, kind=kind)
            if found.status == 401:
                response.headers["WWW-Authenticate"] = 'Bearer realm="crb-intake"'
            return response
        if found.participant != self.participant:
            detail = f"this key is not {self.participant}'s"
            return problem(403, "Not allowed", detail, kind="forbidden")
        return found

    def gate(self, request: Request, cost: float = 1.0) -> Caller | JSONResponse:
        caller = self.authorise(request)
        if isinstance(caller, JSONResponse):
            return caller
        return self.charge(caller, cost)

    def charge(self, caller: Caller, cost: float) -> Caller | JSONResponse:
        wait = self.rate.wait(caller.token_id, cost)
        if wait <= 0:
            return caller
        response = problem(429, "Too many requests", f"retry in {wait:.1f} s", kind="rate-limited")
        response.headers["Retry-After"] = str(max(1, int(wait + 0.999)))
        return response

    async def body_of(self, request: Request) -> Any:
        """The JSON body, or a problem response (413, 415, 400)."""
        limit = self.limits.max_body
        too_large = problem(413, "Too large", f"the body exceeds {limit} bytes", kind="too-large")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return too_large
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:
                return too_large
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in ("application/json", ""):
            return problem(415, "Not JSON", "send application/json", kind="unsupported-media")
        try:
            return json.loads(bytes(data))
        except (UnicodeDecodeError, ValueError):
            return problem(400, "Not JSON", "the body is not valid JSON", kind="not-json")

    # -- one referral ------------------------------------------------------------------

    @staticmethod
    def validate(
        item: Any, prefix: str = "", jurisdiction: str | None = None
    ) -> Submission | dict[str, Any]:
        """The submission, or a problem body naming the fields."""

        def invalid(detail: str, errors: list[dict[str, str]]) -> dict[str, Any]:
            return _problem_body(422, "Invalid referral", detail, "invalid", errors=errors)

        if not isinstance(item, dict):
            return invalid("expected a JSON object", [_err(prefix or "body", "not an object")])
        wrapper = "referral" in item
        extra = sorted(set(item) - {"referral", "jurisdiction", "case_id"}) if wrapper else []
        if extra:
            errors = [_err(f"{prefix}{k}", "unknown key") for k in extra]
            return invalid(f"unknown wrapper keys: {', '.join(extra)}", errors)
        try:
            return _submission(item, jurisdiction)
        except ValidationError as exc:
            inner = prefix + ("referral." if wrapper else "")
            return invalid("the referral does not validate", _field_errors(exc, inner))
        except (InputError, ValueError) as exc:
            return invalid(str(exc), [_err(f"{prefix}jurisdiction", str(exc))])

    async def send_one(
        self,
        item: Any,
        caller: Caller,
        key: str | None,
        prefix: str = "",
        jurisdiction: str | None = None,
    ) -> tuple[int, dict[str, Any], bool]:
        """(status, body, replayed) for one referral; raises ``SendError``."""
        digest = _request_digest([item, jurisdiction])
        if key is not None:
            known = self.store.idempotent(caller.token_id, key)
            if known is not None:
                return await self._replay(known, digest, caller, key)
        checked = self.validate(item, prefix, jurisdiction)
        if not isinstance(checked, Submission):
            return 422, checked, False
        try:
            sealed = self.sender.seal_referral(checked)
        except SendError as exc:  # no recipient, an invalid header: the request's fault
            detail = f"cannot be sealed and routed: {exc}"
            errors = [_err(f"{prefix}jurisdiction", str(exc))]
            return (
                422,
                _problem_body(422, "Unroutable referral", detail, "unroutable", errors=errors),
                False,
            )
        if key is not None:
            kept = IdempotentSend(digest, sealed.message_id, sealed.case_id, sealed.envelope)
            self.store.record_sealed(caller.token_id, key, digest, kept, at=self.clock())
        await self.sender.send(sealed)
        reference = checked.referral.reporter.reference
        self.store.record_reference(reference, RefKind.OWN, sealed.message_id, sealed.case_id)
        self.hook("sent", sealed.message_id)
        body = _accepted(sealed.message_id, sealed.case_id, checked.jurisdiction)
        if key is not None:
            self.store.record_answer(caller.token_id, key, body)
        log.info("intake_accepted", message_id=str(sealed.message_id), client=caller.token_id)
        return 202, body, False

    async def _replay(
        self, known: IdempotentSend, digest: str, caller: Caller, key: str
    ) -> tuple[int, dict[str, Any], bool]:
        if known.request_sha256 != digest:
            detail = "this key was used with another request body"
            body = _problem_body(422, "Idempotency key reused", detail, "idempotency-key-reused")
            return 422, body, False
        if known.response is not None:
            return 202, known.response, True
        # Sealed, maybe sent, before the adapter stopped: the same bytes again (the
        # router refuses a second copy of what it forwarded).
        await self.sender.outbox.send(
            known.envelope, case_id=known.case_id, message_id=known.message_id
        )
        pending = self.store.pending(known.message_id)
        jurisdiction = pending.jurisdiction if pending is not None else ""
        body = _accepted(known.message_id, known.case_id, jurisdiction)
        self.store.record_answer(caller.token_id, key, body)
        return 202, body, True

    # -- the endpoints ---------------------------------------------------------------

    async def post_referral(
        self, request: Request, key: str | None, jurisdiction: str | None = None
    ) -> JSONResponse:
        caller = self.gate(request)
        if isinstance(caller, JSONResponse):
            return caller
        item = await self.body_of(request)
        if isinstance(item, JSONResponse):
            return item
        try:
            status, body, replayed = await self.send_one(item, caller, key, "", jurisdiction)
        except SendError as exc:
            response = problem(503, "Kafka did not take it", str(exc), kind="unavailable")
            response.headers["Retry-After"] = "5"
            return response
        if status != 202:
            return JSONResponse(body, status_code=status, media_type=PROBLEM)
        headers = {"Location": body["status_url"]}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return JSONResponse(body, status_code=202, headers=headers)

    async def post_batch(self, request: Request, key: str | None) -> JSONResponse:
        caller = self.gate(request)
        if isinstance(caller, JSONResponse):
            return caller
        data = await self.body_of(request)
        if isinstance(data, JSONResponse):
            return data
        try:
            batch = BatchRequest.model_validate(data)
        except ValidationError as exc:
            detail = 'expected {"items": [...]}'
            return problem(422, "Invalid batch", detail, kind="invalid", errors=_field_errors(exc))
        charged = self.charge(caller, max(0.0, len(batch.items) - 1.0))
        if isinstance(charged, JSONResponse):
            return charged

        async def one(i: int, item: Any) -> BatchItem:
            item_key = f"{key}#{i}" if key else None
            try:
                status, body, _ = await self.send_one(item, caller, item_key, f"items.{i}.")
            except SendError as exc:
                body = _problem_body(503, "Kafka did not take it", str(exc), "unavailable")
                return BatchItem(index=i, status=503, problem=body)
            if status != 202:
                return BatchItem(index=i, status=status, problem=body)
            return BatchItem(
                index=i,
                status=202,
                message_id=body["message_id"],
                case_id=body["case_id"],
                status_url=body["status_url"],
            )

        items = await asyncio.gather(*(one(i, it) for i, it in enumerate(batch.items)))
        ok = sum(1 for it in items if it.status == 202)
        answer = BatchAnswer(accepted=ok, refused=len(items) - ok, items=list(items))
        return JSONResponse(answer.model_dump(mode="json"))

    async def get_referral(self, request: Request, message_id: UUID) -> JSONResponse:
        caller = self.gate(request)
        if isinstance(caller, JSONResponse):
            return caller
        found = _status(self.store, message_id)
        if found is None:
            detail = f"no referral {message_id} was sent here"
            return problem(404, "Not found", detail, kind="not-found")
        return JSONResponse(found.model_dump(mode="json"))

    async def find_referrals(self, request: Request, reference: str) -> JSONResponse:
        caller = self.gate(request)
        if isinstance(caller, JSONResponse):
            return caller
        out = []
        for entry in self.store.find_reference(reference):
            found = _status(self.store, entry.message_id)
            if found is not None:
                out.append(
                    found.model_copy(update={"reference": reference}).model_dump(mode="json")
                )
        return JSONResponse(out)

    async def inbox(self, request: Request, limit: int, before: str | None) -> JSONResponse:
        caller = self.gate(request)
        if isinstance(caller, JSONResponse):
            return caller
        entries = [
            InboxEntry(
                message_id=d.message.message_id,
                message_type=d.message.message_type.value,
                sender=d.message.sender,
                case_id=d.message.case_id,
                jurisdiction=d.message.jurisdiction,
                category=d.message.category.value,
                priority=d.message.priority.value,
                in_reply_to=d.message.in_reply_to,
                delivered_at=d.delivered_at,
                receipt_sent_at=d.receipt_sent_at,
                document_url=f"/inbox/{d.message.message_id}",
            ).model_dump(mode="json")
            for d in self.store.delivered_list(limit=limit, before=before)
        ]
        return JSONResponse(entries)

    def _document(self, message_id: UUID) -> dict[str, Any] | None:
        if self.inbox_folder is None:
            return None
        path = self.inbox_folder / f"{message_id}.json"
        try:
            found: dict[str, Any] = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return None
        return found

    async def inbox_document(self, request: Request, message_id: UUID) -> JSONResponse:
        caller = self.gate(request)
        if isinstance(caller, JSONResponse):
            return caller
        document = self._document(message_id)
        if document is None:
            detail = f"no delivered message {message_id} here (or its content was purged)"
            return problem(404, "Not found", detail, kind="not-found")
        return JSONResponse(document)

    async def decide(self, request: Request, message_id: UUID, kind: str) -> JSONResponse:
        caller = self.gate(request)
        if isinstance(caller, JSONResponse):
            return caller
        data = await self.body_of(request)
        if isinstance(data, JSONResponse):
            return data
        try:
            asked = DecisionRequest.model_validate(data if data is not None else {})
        except ValidationError as exc:
            return problem(422, "Invalid decision", "see errors", kind="invalid",
                           errors=_field_errors(exc))  # fmt: skip
        known = self.store.get(message_id)
        if known is None or known.message.message_type is not MessageType.REFERRAL:
            detail = f"{self.participant} received no referral {message_id}"
            return problem(404, "Not found", detail, kind="not-found")
        original = known.message
        try:
            decision = _decision(kind, asked)
        except ValueError as exc:
            return problem(422, "Invalid decision", str(exc), kind="invalid",
                           errors=[_err(str(exc).split(" ", 1)[0], str(exc))])  # fmt: skip
        try:
            if decision is None:  # a move: the referral goes first, then the decision
                document = self._document(message_id)
                if document is None or "referral" not in document:
                    detail = "the referral's content is no longer here to forward"
                    return problem(409, "Cannot move", detail, kind="conflict")
                referral = Referral.model_validate(document["referral"])
                assert asked.to_jurisdiction is not None
                forwarded, ack = self.sender.seal_move(
                    original, referral, to_jurisdiction=asked.to_jurisdiction,
                    detail=asked.detail,
                )  # fmt: skip
                sent = [await self.sender.send(forwarded), await self.sender.send(ack)]
            else:
                sent = [await self.sender.send(self.sender.seal_case_ack(original, decision))]
        except SendError as exc:
            response = problem(503, "Kafka did not take it", str(exc), kind="unavailable")
            response.headers["Retry-After"] = "5"
            return response
        if kind == "accept" and asked.reference is not None:
            self.store.record_reference(
                asked.reference, RefKind.OWN, original.message_id, original.case_id
            )
        body = DecisionSent(message_ids=sent).model_dump(mode="json")
        return JSONResponse(body, status_code=202)


def _decision(kind: str, asked: DecisionRequest) -> Decision | None:
    """The decision for ``kind`` (``None`` for a move); ``ValueError`` names what is
    missing."""
    if kind == "accept":
        if asked.reference is None:
            raise ValueError("reference is needed to accept")
        return AcceptedDecision(receiver_reference=asked.reference)
    if kind == "reject":
        if asked.reason is None:
            raise ValueError("reason is needed to reject")
        return Rejected(reason=asked.reason, detail=asked.detail)
    if kind == "move":
        if asked.to_jurisdiction is None:
            raise ValueError("to_jurisdiction is needed to move")
        return None
    if kind == "action":
        if asked.action is None:
            raise ValueError("action is needed for an action")
        return Actioned(action=asked.action, actioned_at=asked.actioned_at,
                        url_indexes=tuple(asked.url_indexes), detail=asked.detail)  # fmt: skip
    return Closed(detail=asked.detail)


def _err(name: str, message: str) -> dict[str, str]:
    return {"field": name, "message": message}


def _problem_body(status: int, title: str, detail: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": _TYPES + kind, "title": title, "status": status, "detail": detail, **extra}


def _accepted(message_id: UUID, case_id: UUID, jurisdiction: str) -> dict[str, Any]:
    return Accepted(
        message_id=message_id,
        case_id=case_id,
        jurisdiction=jurisdiction,
        status_url=f"/referrals/{message_id}",
    ).model_dump(mode="json")


_KeyHeader = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": "problem details", "content": {PROBLEM: {}}}
    for code in (400, 401, 403, 413, 415, 422, 429, 503)
}


def _body(schema: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def create_intake(
    sender: Sender,
    store: StateStore,
    access: Access,
    *,
    limits: IntakeLimits | None = None,
    clock: Clock = utcnow,
    hook: Callable[[str, UUID], None] = lambda _stage, _mid: None,
    inbox_folder: Path | None = None,
) -> FastAPI:
    """The intake API of ``sender``'s participant (see the module docstring).
    ``inbox_folder``: where the receiver's folder sink writes delivered messages
    (``GET /inbox/{id}`` reads them; a move forwards the referral from there).
    ``hook(stage, message_id)`` is called at ``sent`` (Kafka acknowledged, answer
    not yet stored): tests stop the adapter there."""
    intake = _Intake(sender, store, access, limits or IntakeLimits(), clock, hook, inbox_folder)
    app = FastAPI(
        title=f"Case-referral intake of {intake.participant}",
        version="1",
        description="Push referrals to this participant's adapter: it seals and sends them.",
        docs_url=None,
        redoc_url=None,
    )

    @app.post("/referrals", status_code=202, response_model=Accepted, responses=_ERRORS,
              openapi_extra=_body("Referral"))  # fmt: skip
    async def post_referral(
        request: Request,
        idempotency_key: _KeyHeader = None,
        jurisdiction: Annotated[str | None, Query(pattern="^[A-Z]{2}$")] = None,
    ) -> JSONResponse:
        """Seal and send one referral; ``jurisdiction`` names the responsible country
        (else the wrapper's, else derived from the hosting country)."""
        return await intake.post_referral(request, idempotency_key, jurisdiction)

    @app.post("/referrals:batch", response_model=BatchAnswer, responses=_ERRORS,
              openapi_extra=_body("BatchRequest"))  # fmt: skip
    async def post_batch(request: Request, idempotency_key: _KeyHeader = None) -> JSONResponse:
        return await intake.post_batch(request, idempotency_key)

    @app.get("/referrals/{message_id}", response_model=ReferralStatus, responses=_ERRORS)
    async def get_referral(request: Request, message_id: UUID) -> JSONResponse:
        return await intake.get_referral(request, message_id)

    @app.get("/referrals", response_model=list[ReferralStatus], responses=_ERRORS)
    async def find_referrals(
        request: Request, reference: Annotated[str, Query(min_length=1, max_length=200)]
    ) -> JSONResponse:
        return await intake.find_referrals(request, reference)

    @app.get("/inbox", response_model=list[InboxEntry], responses=_ERRORS)
    async def inbox(
        request: Request,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before: Annotated[str | None, Query(max_length=40)] = None,
    ) -> JSONResponse:
        """Messages delivered to this participant, newest first."""
        return await intake.inbox(request, limit, before)

    @app.get("/inbox/{message_id}", responses=_ERRORS)
    async def inbox_document(request: Request, message_id: UUID) -> JSONResponse:
        """A delivered message: its clear facts and the opened payload."""
        return await intake.inbox_document(request, message_id)

    @app.post("/messages/{message_id}/{kind}", status_code=202, response_model=DecisionSent,
              responses=_ERRORS, openapi_extra=_body("DecisionRequest"))  # fmt: skip
    async def decide(
        request: Request,
        message_id: UUID,
        kind: Literal["accept", "reject", "move", "action", "close"],
    ) -> JSONResponse:
        """A signed case decision about a received referral, back to its sender."""
        return await intake.decide(request, message_id, kind)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "participant": intake.participant}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=app.routes,
            )  # fmt: skip
            _, defs = models_json_schema(
                [
                    (Referral, "validation"),
                    (BatchRequest, "validation"),
                    (DecisionRequest, "validation"),
                ],
                ref_template="#/components/schemas/{model}",
            )
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {}).update(defs["$defs"])
            components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _status(store: StateStore, message_id: UUID) -> ReferralStatus | None:
    p: PendingReferral | None = store.pending(message_id)
    if p is not None:
        return ReferralStatus(
            message_id=p.message_id,
            case_id=p.case_id,
            recipients=list(p.recipients),
            answered=list(p.answered),
            waiting_for=sorted(set(p.recipients) - set(p.answered)),
            sent_at=p.sent_at,
            redeliveries=p.attempts,
            escalated_to=p.escalated_to,
            escalation_id=p.escalation_id,
        )
    sent = store.sent_referral(message_id)
    if sent is None:
        return None
    # No copy kept any more: every recipient answered (or it was kept too long).
    return ReferralStatus(message_id=message_id, case_id=sent.case_id, reference=sent.reference)
