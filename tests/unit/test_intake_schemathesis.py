"""The intake API against its own OpenAPI document: schemathesis generates requests
(valid, invalid, edge cases) for every operation, and no answer may be a server
error. Driven through Hypothesis directly (schemathesis' pytest plugin is not
used: its fixture integration does not support this pytest)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok

from adapters import Access, IntakeLimits, StateStore, TokenStore, create_intake
from schemas import utcnow
from tests._fed import LiveFederation
from tests.unit._adapter_kit import FakeKafka, sender

EXAMPLES = 80
"""Generated requests per operation (and per generation mode)."""


def test_no_generated_request_gets_a_server_error(tmp_path: Path) -> None:
    fed, kafka = LiveFederation(), FakeKafka()
    store = StateStore(tmp_path / "state")
    tokens = TokenStore(tmp_path / "keys.json")
    key, _ = tokens.issue("participant:de.hotline", now=utcnow())
    de = sender(fed, "de.hotline", kafka)
    de.pending = store
    unlimited = IntakeLimits(rate_per_s=1e9, burst=1e9)  # the rate limit is tested elsewhere
    app = create_intake(de, store, Access(tokens.tokens), limits=unlimited)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    auth = {"Authorization": f"Bearer {key}"}
    statuses: Counter[int] = Counter()
    found = list(schema.get_all_operations())
    operations = [r.ok() for r in found if isinstance(r, Ok)]
    assert len(operations) == len(found)  # every operation of the document is usable
    assert {f"{op.method.upper()} {op.path}" for op in operations} == {
        "POST /referrals", "POST /referrals:batch", "GET /referrals/{message_id}",
        "GET /referrals", "GET /inbox", "GET /inbox/{message_id}",
        "POST /messages/{message_id}/{kind}",
    }  # fmt: skip
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        def call(case: Any) -> None:
            response = case.call(headers=auth)
            statuses[response.status_code] += 1
            assert response.status_code < 500, (case.method, case.path, response.text)

        call()
    store.close()
    total = sum(statuses.values())
    print(f"\n[schemathesis] {total} generated requests, statuses {dict(sorted(statuses.items()))}")
    assert total >= 4 * EXAMPLES  # a real number of requests ran
    assert statuses[202] + statuses[200] > 0  # some were valid and accepted
    assert any(400 <= s < 500 for s in statuses)  # and many refused, cleanly
