"""Hypothesis strategies for the contracts in ``schemas`` (synthetic data only).

``referrals()`` draws valid :class:`schemas.Referral` values; ``headers()`` valid
:class:`schemas.EnvelopeHeader` values. Domains are ``example.org`` / ``.test``,
IPv4 addresses come from the documentation ranges (RFC 5737) and IPv6 from
``2001:db8::/32`` (RFC 3849); hashes are random hex.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import cache
from ipaddress import IPv4Address, IPv6Address, ip_network
from uuid import UUID

from hypothesis import strategies as st

import schemas as s

DOC_NETS_V4 = tuple(ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"))
DOC_NET_V6 = ip_network("2001:db8::/32")

_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
COUNTRIES = sorted(s.ISO_3166_ALPHA2)


@cache
def instants() -> st.SearchStrategy[datetime]:
    """UTC instants, 2000-2100, microsecond precision."""
    return st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    )


@cache
def uuid7s() -> st.SearchStrategy[UUID]:
    return st.builds(
        lambda t, r: s.uuid7(t, lambda n: r[:n]), instants(), st.binary(min_size=10, max_size=10)
    )


@cache
def countries() -> st.SearchStrategy[str]:
    return st.sampled_from(COUNTRIES)


@cache
def ip_addresses() -> st.SearchStrategy[IPv4Address | IPv6Address]:
    v4 = st.builds(
        lambda net, host: net[host],
        st.sampled_from(DOC_NETS_V4),
        st.integers(1, 254),
    )
    v6 = st.builds(lambda n: DOC_NET_V6[n], st.integers(1, 2**96 - 1))
    return st.one_of(v4, v6)


@cache
def texts(max_size: int = 80) -> st.SearchStrategy[str]:
    """Non-blank free text, any Unicode but surrogates (not encodable in UTF-8)."""
    return st.builds(
        lambda head, tail: head + tail, st.sampled_from("AbZ09"), st.text(max_size=max_size - 1)
    )


@cache
def labels() -> st.SearchStrategy[str]:
    return st.text(_ALNUM, min_size=1, max_size=12)


@cache
def urls() -> st.SearchStrategy[str]:
    return st.builds(
        lambda scheme, sub, tld, path: f"{scheme}://{sub}.{tld}/{path}",
        st.sampled_from(["http", "https", "ftp"]),
        labels(),
        st.sampled_from(["example.org", "host.test", "cdn.example.test"]),
        st.text(_ALNUM + "/-_.?=&", max_size=40),
    )


@cache
def references() -> st.SearchStrategy[str]:
    return st.builds(
        lambda head, tail: head + tail,
        st.sampled_from("AZaz09"),
        st.text(_ALNUM + "ABCZ._:/#-", max_size=20),
    )


@cache
def participant_ids() -> st.SearchStrategy[str]:
    return st.builds(
        lambda cc, name: f"{cc}.{name}",
        st.sampled_from([c.lower() for c in COUNTRIES] + ["int"]),
        st.text(_ALNUM + "_-", min_size=1, max_size=20),
    )


@cache
def content_hashes() -> st.SearchStrategy[s.ContentHash]:
    def build(alg: s.HashAlgorithm, raw: bytes, quality: int | None) -> s.ContentHash:
        value = raw.hex()[: s.HASH_HEX_LENGTH[alg]]
        q = quality if alg is s.HashAlgorithm.PDQ else None
        return s.ContentHash(algorithm=alg, value=value, quality=q)

    return st.builds(
        build,
        st.sampled_from(s.HashAlgorithm),
        st.binary(min_size=32, max_size=32),
        st.none() | st.integers(0, 100),
    )


@cache
def hostings() -> st.SearchStrategy[s.Hosting]:
    return st.builds(
        s.Hosting,
        country=st.none() | countries(),
        ip=st.none() | ip_addresses(),
        asn=st.none() | st.integers(1, 4_294_967_295),
        isp=st.none() | texts(50),
        organisation=st.none() | texts(50),
        cdn=st.booleans(),
    )


@cache
def reported_urls() -> st.SearchStrategy[s.ReportedUrl]:
    return st.builds(
        s.ReportedUrl,
        url=urls(),
        source_url=st.none() | urls(),
        referrer=st.none() | urls(),
        site_type=st.sampled_from(s.SiteType),
        hosting=st.none() | hostings(),
        assigned_country=st.none() | countries(),
    )


@cache
def content_items(n_urls: int) -> st.SearchStrategy[s.ContentItem]:
    return st.builds(
        s.ContentItem,
        media_type=st.sampled_from(s.MediaType),
        hashes=st.lists(content_hashes(), min_size=1, max_size=4, unique=True).map(tuple),
        classification=st.sampled_from(s.Classification),
        age_group=st.sampled_from(s.AgeGroup),
        gender=st.sampled_from(s.Gender),
        virtual=st.booleans(),
        annotations=st.lists(st.sampled_from(s.ItemAnnotation), unique=True).map(tuple),
        url_index=st.none() | st.integers(0, n_urls - 1) if n_urls else st.none(),
    )


@cache
def ip_events() -> st.SearchStrategy[s.IpCaptureEvent]:
    return st.builds(
        s.IpCaptureEvent,
        ip=ip_addresses(),
        event=st.sampled_from(s.IpEventType),
        at=instants(),
        port=st.none() | st.integers(0, 65_535),
        possible_proxy=st.booleans(),
    )


@cache
def persons() -> st.SearchStrategy[s.ReportedPerson]:
    return st.builds(
        s.ReportedPerson,
        role=st.sampled_from(s.PersonRole),
        screen_names=st.lists(texts(30), max_size=3).map(tuple),
        profile_urls=st.lists(urls(), max_size=2).map(tuple),
        emails=st.lists(st.builds(lambda u: f"{u}@mail.example.org", labels()), max_size=2).map(
            tuple
        ),
        phones=st.lists(
            st.builds(
                lambda first, rest: f"+{first}{rest}",
                st.integers(1, 9),
                st.text("0123456789", min_size=4, max_size=14),
            ),
            max_size=2,
        ).map(tuple),
        device_ids=st.lists(labels(), max_size=2).map(tuple),
        estimated_location=st.none()
        | st.builds(
            s.Location,
            country=st.none() | countries(),
            region=st.none() | texts(30),
            city=st.none() | texts(30),
        ),
        age=st.none() | st.integers(0, 130),
        ip_events=st.lists(ip_events(), max_size=2).map(tuple),
    )


@cache
def urgencies() -> st.SearchStrategy[s.Urgency]:
    return st.builds(
        lambda prio, reason: s.Urgency(priority=prio, reason=reason),
        st.sampled_from(s.Priority),
        texts(100),
    ) | st.builds(s.Urgency, priority=st.sampled_from([s.Priority.ROUTINE, s.Priority.HIGH]))


@cache
def handlings() -> st.SearchStrategy[s.Handling]:
    return st.builds(
        lambda code, text, rel, acc, tlp: s.Handling(
            code=code,
            restriction=text if code is s.HandlingCode.H3 else None,
            source_reliability=rel,
            information_accuracy=acc,
            tlp=tlp,
        ),
        st.sampled_from(s.HandlingCode),
        texts(100),
        st.sampled_from(s.SourceReliability),
        st.sampled_from(s.InformationAccuracy),
        st.sampled_from(s.Tlp),
    )


@st.composite
def referrals(draw: st.DrawFn) -> s.Referral:
    """A random valid referral (at least one URL, item or person)."""
    url_list = draw(st.lists(reported_urls(), max_size=2))
    items = draw(st.lists(content_items(len(url_list)), max_size=3))
    people = draw(st.lists(persons(), max_size=2))
    if not (url_list or items or people):
        url_list = [draw(reported_urls())]
    return s.Referral(
        reporter=draw(
            st.builds(
                s.Reporter,
                reference=references(),
                analyst=st.none() | labels(),
                received_at=st.none() | instants(),
                memo=st.none() | texts(),
            )
        ),
        incident=draw(
            st.builds(
                s.Incident,
                type=st.sampled_from(s.Category),
                occurred_at=st.none() | instants(),
                platform=st.none() | texts(40),
                summary=texts(),
            )
        ),
        urgency=draw(urgencies()),
        annotations=tuple(draw(st.lists(st.sampled_from(s.Annotation), unique=True))),
        urls=tuple(url_list),
        items=tuple(items),
        persons=tuple(people),
        prior_reports=tuple(
            draw(
                st.lists(
                    st.builds(
                        s.PriorReport,
                        reference=references(),
                        organisation=st.none() | participant_ids(),
                        case_id=st.none() | uuid7s(),
                    ),
                    max_size=2,
                )
            )
        ),
        group_id=draw(st.none() | references()),
        handling=draw(handlings()),
        delete_after=draw(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1))),
    )


@st.composite
def headers(draw: st.DrawFn) -> s.EnvelopeHeader:
    """A random valid envelope header (referral or reply)."""
    message_type = draw(st.sampled_from(s.MessageType))
    sender = draw(participant_ids())
    others = st.lists(participant_ids().filter(lambda p: p != sender), min_size=1, unique=True)
    recipients = draw(others.map(lambda r: r[:1]) if message_type != "referral" else others)
    message_id = draw(uuid7s())
    reply_to = None
    if message_type in s.REPLY_MESSAGE_TYPES:
        reply_to = draw(uuid7s().filter(lambda u: u != message_id))
    return s.EnvelopeHeader(
        message_id=message_id,
        message_type=message_type,
        sender=sender,
        sender_key_id=draw(references().map(lambda r: r.replace("#", "+"))),
        created_at=draw(instants()),
        case_id=draw(uuid7s()),
        jurisdiction=draw(countries()),
        category=draw(st.sampled_from(s.Category)),
        priority=draw(st.sampled_from(s.Priority)),
        handling_code=draw(st.sampled_from(s.HandlingCode)),
        recipients=tuple(recipients[: s.MAX_RECIPIENTS]),
        in_reply_to=reply_to,
        decision=draw(st.sampled_from(s.DecisionKind))
        if message_type == s.MessageType.CASE_ACK
        else None,
        key_commitment=draw(st.binary(min_size=32, max_size=32)).hex(),
    )


__all__ = [
    "content_hashes",
    "countries",
    "headers",
    "instants",
    "ip_addresses",
    "participant_ids",
    "referrals",
    "uuid7s",
]
