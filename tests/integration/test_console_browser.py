"""The operator console in a real browser (Playwright driving Debian's Chromium)
against a running system on the real, secured Kafka: router, tracker with its
console on loopback, nl.hotline's receiving adapter — each logged in as itself.

- an operator signs in and the route board shows every handover the tracker holds;
- an urgent handover going overdue appears in the needs-attention list live,
  without a reload;
- a dead letter (a suspended sender's referral) is redriven from the console once
  the sender is reinstated, and its handover ends received;
- a participant's token cannot open another participant's handover;
- no page logs a console error.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import keys
from adapters import (
    DirectoryFollower,
    FolderSink,
    Identity,
    Outbox,
    Receiver,
    Sender,
    StateStore,
    Submission,
)
from adapters.kafka import ROUTER, TRACKER, OutRecord, sign
from broker.router import Router
from broker.settings import TrackerSettings
from broker.tracker import OPERATOR, Access, Tracker, create_app, serve
from broker.tracker._access import new_token
from keys import STATUS_CONTEXT, LiveDirectory
from keys.testing import Federation, MemberSpec
from schemas import (
    HandoverState,
    ParticipantStatus,
    Priority,
    Role,
    ServiceRole,
    StatusEvent,
    utcnow,
    uuid7,
)
from tests._fed import make_referral
from tests.conftest import KafkaEndpoint
from tests.integration._kafka_util import free_port, running, wait_until
from tests.integration._secured import HOTLINE_MEMBERS, HOTLINE_RULES, Cluster

CHROMIUM = os.environ.get("CRB_CHROMIUM") or shutil.which("chromium")
SHOTS = os.environ.get("CRB_SCREENSHOTS")
"""A folder to save screenshots of the pages in (how ``docs/*.png`` are made)."""


async def _shot(page: Any, name: str, tracker: Tracker) -> None:
    """A screenshot of ``page`` (reloaded) once the health strip was looked at anew."""
    if SHOTS:
        mark = utcnow()
        await wait_until(
            lambda: (s := tracker.watch.strip) is not None and s.at > mark, what="a new look"
        )
        await page.reload()
        await page.set_viewport_size({"width": 1400, "height": 800})
        await page.screenshot(path=str(Path(SHOTS) / f"console-{name}.png"), full_page=True)


pytestmark = [
    pytest.mark.kafka,
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)"
    ),
]

MEMBERS = (*HOTLINE_MEMBERS, MemberSpec("nl.police24", "NL", (Role.POLICE_24X7,)))
RULES = HOTLINE_RULES


class _Browser:
    """One Chromium; pages that record every console error and uncaught exception."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.errors: list[str] = []

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} at {message.location}")

    async def page(self, base: str, token: str) -> Any:
        context = await self.browser.new_context()
        page = await context.new_page()
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        await page.goto(f"{base}/console/login")
        await page.fill("#token", token)
        await page.click("form.login button[type=submit]")
        await page.wait_for_url(f"{base}/console/")
        return page


@pytest.fixture
async def chromium() -> AsyncIterator[_Browser]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield _Browser(browser)
        finally:
            await browser.close()


@pytest.mark.timeout(300)
async def test_the_console_in_a_browser(
    kafka: KafkaEndpoint, tmp_path: Path, chromium: _Browser
) -> None:
    if not kafka.secured:
        pytest.skip("this cluster has no authentication (CRB_KAFKA=docker runs it plain)")
    start = utcnow() - timedelta(days=30)
    fed = Federation(MEMBERS, not_before=start, not_after=start + timedelta(days=365),
                     rules=RULES)  # fmt: skip
    c = Cluster(kafka, tmp_path, fed)
    prefix = c.settings.topics.prefix
    section = TrackerSettings(
        group_id=f"{prefix}-tracker", poll_timeout_ms=100, alert_interval_s=1.0,
        receipt_sla_urgent=timedelta(seconds=2), escalate_after=1000.0,
    )  # fmt: skip
    c.settings = c.settings.model_copy(update={"tracker": section})
    n = c.names
    v1 = fed.directory()
    await c.provision(v1)

    router_clients, tracker_clients = c.clients(ROUTER), c.clients(TRACKER)
    router_live = LiveDirectory(v1, root=fed.root.verify_key)
    router_follower = DirectoryFollower(router_clients, n.directory, router_live)
    router = Router(c.settings_as(ROUTER), router_live, signer=fed.signer(ServiceRole.ROUTER),
                    clients=router_clients, follower=router_follower)  # fmt: skip
    tracker_live = LiveDirectory(v1, root=fed.root.verify_key)
    tracker_follower = DirectoryFollower(tracker_clients, n.directory, tracker_live)
    tracker = Tracker(
        c.settings_as(TRACKER), v1, clients=tracker_clients, directory=tracker_live,
        signer=fed.signer(ServiceRole.TRACKER), follower=tracker_follower,
    )  # fmt: skip
    operator, op_record = new_token(OPERATOR, label="operator", now=utcnow())
    police, police_record = new_token("participant:nl.police24", label="police", now=utcnow())
    tokens = {op_record.id: op_record, police_record.id: police_record}
    app = create_app(
        tracker.handovers, access=Access(lambda: tokens), ready=tracker.ready.is_set,
        console=tracker.handovers, health=tracker.health_report,
        redrive=lambda p, o, by: tracker.redrive(p, o, by=by),
        strip=lambda: tracker.watch.strip,
    )  # fmt: skip
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    def run_router(stop: asyncio.Event) -> Coroutine[Any, Any, None]:
        return router_follower.alongside(router.run(stop))

    def run_tracker(stop: asyncio.Event) -> Coroutine[Any, Any, None]:
        return tracker_follower.alongside(tracker.run(stop))

    def identity(pid: str, directory: Any) -> Identity:
        return Identity(pid, fed.signing(pid), (fed.opening(pid),), directory)

    de = Sender(identity("de.hotline", v1), Outbox.of(c.admin, n, "de.hotline", c.settings.adapter))
    nl_out = Outbox.of(c.clients("nl.hotline"), n, "nl.hotline", c.settings.adapter)
    nl = Sender(identity("nl.hotline", tracker_live), nl_out)
    store = StateStore(tmp_path / "nl-state")
    receiver = Receiver(c.clients("nl.hotline"), n, c.settings.adapter, nl,
                        FolderSink(tmp_path / "nl-inbox"), store)  # fmt: skip
    receiver_ready = asyncio.Event()

    async def run_receiver(stop: asyncio.Event) -> None:
        await receiver.run(stop, ready=receiver_ready)

    stop_console = asyncio.Event()
    console = asyncio.create_task(serve(app, "127.0.0.1", port, stop_console))
    try:
        async with (
            running(run_router, router.ready, "router"),
            running(run_tracker, tracker.ready, "tracker"),
            running(run_receiver, receiver_ready, "nl.hotline's adapter"),
        ):
            sent = [de.seal_referral(Submission(make_referral(), "NL")) for _ in range(3)]
            for s in sent:
                await de.send(s)

            def all_received() -> bool:
                got = [tracker.ledger.get(f"{s.message_id}/nl.hotline") for s in sent]
                return all(h is not None and h.state is HandoverState.RECEIVED for h in got)

            await wait_until(all_received, what="three referrals received", timeout_s=60)
            mark = utcnow()
            await wait_until(
                lambda: (s := tracker.watch.strip) is not None and s.at > mark,
                what="a health strip looked at after that",
            )

            # 1. The board shows every handover the tracker holds.
            page = await chromium.page(base, operator)
            assert f"{len(tracker.snapshot())} handovers." in await page.inner_text("#live")
            assert "de.hotline" in await page.inner_text("table.board")
            await _shot(page, "board", tracker)

            # 2. An urgent handover to nl.police24 (no adapter running) goes overdue:
            # it appears in the needs-attention list without a reload.
            await page.goto(f"{base}/console/attention")
            await page.wait_for_function("document.getElementById('live-status')"
                                         ".textContent === 'live'")  # fmt: skip
            await page.evaluate("window.__stayed = 42")
            urgent = StatusEvent(
                message_id=uuid7(utcnow(), rng=os.urandom), case_id=uuid7(utcnow(), rng=os.urandom),
                sender="de.hotline", recipient="nl.police24", state=HandoverState.ROUTED,
                at=utcnow(), priority=Priority.URGENT, jurisdiction="NL",
            )  # fmt: skip
            producer = c.admin.producer()
            await producer.start()
            try:
                await producer.send_and_wait(
                    sign(
                        OutRecord(
                            n.status, urgent.key().encode(), urgent.model_dump_json().encode()
                        ),
                        fed.signer(ServiceRole.ROUTER),
                        STATUS_CONTEXT,
                    )
                )
            finally:
                await producer.stop()
            row = page.locator("table.rows tr", has_text=str(urgent.message_id))
            await row.wait_for(timeout=30_000)
            assert "overdue" in await row.inner_text()
            assert 42 == await page.evaluate("window.__stayed"), "the page was reloaded"
            await _shot(page, "attention", tracker)

            # 3. A suspended sender's referral is dead-lettered; once reinstated, it
            # is redriven from the console and ends received.
            suspended = keys.set_status(v1, "de.hotline", ParticipantStatus.SUSPENDED,
                                        now=utcnow())  # fmt: skip
            await c.operate(suspended)
            await wait_until(lambda: router.live.version == suspended.version, what="suspended")
            late = de.seal_referral(Submission(make_referral(), "NL"))
            await de.send(late)
            await wait_until(
                lambda: tracker.handovers().count_dead_letters() == 1,
                what="the dead letter listed", timeout_s=30,
            )  # fmt: skip
            reinstated = keys.set_status(suspended, "de.hotline", ParticipantStatus.ACTIVE,
                                         now=utcnow())  # fmt: skip
            await c.operate(reinstated)
            await wait_until(lambda: router.live.version == reinstated.version, what="back")
            await page.goto(f"{base}/console/dead-letters")
            await page.click("text=details")
            assert "sender_suspended" in await page.inner_text("main")
            await page.click("form.redrive button[type=submit]")
            await page.locator("p.notice").wait_for()
            assert "Redriven into" in await page.inner_text("p.notice")
            key = f"{late.message_id}/nl.hotline"
            await wait_until(
                lambda: (h := tracker.ledger.get(key)) is not None
                and h.state is HandoverState.RECEIVED,
                what="the redriven referral received", timeout_s=60,
            )  # fmt: skip
            await page.goto(f"{base}/console/handover/{late.message_id}/nl.hotline")
            fields = await page.inner_text("dl.fields")
            assert "received" in fields
            assert "signature verified by the router" in fields, "the receipt's evidence"
            await _shot(page, "handover", tracker)

            # 4. nl.police24's token sees its own handover, not nl.hotline's.
            theirs = await chromium.page(base, police)
            answer = await theirs.goto(f"{base}/console/handover/{late.message_id}/nl.hotline")
            assert answer is not None
            assert 404 == answer.status
            own = await theirs.goto(f"{base}/console/handover/{urgent.message_id}/nl.police24")
            assert own is not None
            assert 200 == own.status
            await nl_out.stop()
            await de.outbox.stop()
    finally:
        stop_console.set()
        await console
        store.close()
    # 5. No page logged a console error (a 404 document is not a script error).
    assert [] == [e for e in chromium.errors if "404" not in e]
