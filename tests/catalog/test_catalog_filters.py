"""Every session filter on both databases, alone and together, and the query strings that name them."""

from __future__ import annotations

import pytest

from catalog_helpers import DUAL, FLAGGED, REVIEW, WITHHELD, at, record
from stream.server.alerts import alerts_in
from stream.server.catalog import CatalogQueryError, SessionFilters, session_request

LONG = "x" * 300  # longer than a filterable metadata value

SESSIONS = [  # (session.json, events raising alerts, alert ids to acknowledge)
    (record("a-live", started=50, status="live", source="twilio", context="Medical Consultation", profile="medical",
            parties=["caller", "agent"],
            metadata={"customer": "c1", "n": 5, "vip": True, "twilio": {"call_sid": "CA1", "from": "+1555"}}),
     [REVIEW], []),
    (record("b-done", started=40, context="insurance 50%_claim", metadata={"customer": "c2", "region": "eu", "ratio": 0.5}),
     [DUAL], ["b-done#1"]),
    (record("c-cut", started=30, status="interrupted", context="Über Straße", profile="medical",
            parties=["caller", "supervisor"], metadata={"customer": "c1", "region": "eu", "note": None}),
     [FLAGGED, WITHHELD], []),
    (record("d-twilio", started=20, source="twilio", context=None, parties=["caller", "agent"],
            metadata={"long": LONG, "deep": {"inner": {"x": 1}}, "list": [1, 2], "region": "us"}),
     [], []),
    (record("e-old", started=10, status="disconnected", context="medical follow-up", metadata={"customer": "c3"}),
     [REVIEW, DUAL], ["e-old#1", "e-old#2"]),
]


def _load(catalog):
    async def go():
        for doc, events, acks in SESSIONS:
            await catalog.session_started(doc)
            for alert in alerts_in(doc["session_id"], events):
                await catalog.add_alert(alert)
            for alert_id in acks:
                await catalog.acknowledge(alert_id, "supervisor")
    return go()


CASES = [
    (SessionFilters(), ["a-live", "b-done", "c-cut", "d-twilio", "e-old"]),
    (SessionFilters(live=True), ["a-live"]),
    (SessionFilters(live=False), ["b-done", "c-cut", "d-twilio", "e-old"]),
    (SessionFilters(status="interrupted"), ["c-cut"]),
    (SessionFilters(started_from=at(20)), ["a-live", "b-done", "c-cut", "d-twilio"]),  # inclusive
    (SessionFilters(started_to=at(20)), ["e-old"]),  # exclusive
    (SessionFilters(started_from=at(15), started_to=at(40)), ["c-cut", "d-twilio"]),
    (SessionFilters(started_from="2025-03-01T10:00:30+01:00"), ["a-live", "b-done", "c-cut"]),  # any offset
    (SessionFilters(source="twilio"), ["a-live", "d-twilio"]),
    (SessionFilters(context="medical"), ["a-live", "e-old"]),  # any case
    (SessionFilters(context="CONSULT"), ["a-live"]),
    (SessionFilters(context="ÜBER STRASSE"), ["c-cut"]),  # Unicode case folding: ß matches SS
    (SessionFilters(context="50%_"), ["b-done"]),  # % and _ are plain characters
    (SessionFilters(context="%"), ["b-done"]),
    (SessionFilters(context="0%c"), []),
    (SessionFilters(profile="medical"), ["a-live", "c-cut"]),
    (SessionFilters(party="agent"), ["a-live", "d-twilio"]),
    (SessionFilters(party="supervisor"), ["c-cut"]),
    (SessionFilters(party="nobody"), []),
    (SessionFilters(alert_kind="review"), ["a-live", "e-old"]),
    (SessionFilters(alert_kind="dual"), ["b-done", "e-old"]),
    (SessionFilters(alert_kind="flagged"), ["c-cut"]),
    (SessionFilters(alert_kind="withheld"), ["c-cut"]),
    (SessionFilters(unacknowledged=True), ["a-live", "c-cut"]),
    (SessionFilters(metadata=(("customer", "c1"),)), ["a-live", "c-cut"]),
    (SessionFilters(metadata=(("customer", "c1"), ("region", "eu"))), ["c-cut"]),  # every pair must hold
    (SessionFilters(metadata=(("region", "eu"), ("customer", "c1"))), ["c-cut"]),
    (SessionFilters(metadata=(("n", "5"),)), ["a-live"]),
    (SessionFilters(metadata=(("vip", "true"),)), ["a-live"]),
    (SessionFilters(metadata=(("ratio", "0.5"),)), ["b-done"]),
    (SessionFilters(metadata=(("note", "null"),)), ["c-cut"]),
    (SessionFilters(metadata=(("twilio.call_sid", "CA1"),)), ["a-live"]),  # one level down
    (SessionFilters(metadata=(("deep.inner", '{"x": 1}'),)), []),  # deeper objects are not flattened
    (SessionFilters(metadata=(("long", LONG[:256]),)), []),  # too long to filter on
    (SessionFilters(metadata=(("customer", "C1"),)), []),  # values match exactly
    (SessionFilters(source="twilio", party="agent", unacknowledged=True), ["a-live"]),
    (SessionFilters(party="caller", alert_kind="review", context="medical"), ["a-live"]),
    (SessionFilters(metadata=(("region", "eu"),), party="caller", started_to=at(40)), ["c-cut"]),
    (SessionFilters(context="medical", started_from=at(10), started_to=at(11)), ["e-old"]),
    (SessionFilters(alert_kind="dual", unacknowledged=True), []),
    (SessionFilters(live=True, status="complete"), []),
]


def test_every_filter_alone_and_together(backend):
    async def body(catalog):
        await _load(catalog)
        return [[item["session_id"] for item in (await catalog.sessions(f)).items] for f, _ in CASES]

    results = backend.run(body)
    for (f, expected), got in zip(CASES, results):
        assert got == expected, f


def test_filtered_pages_continue_where_they_stopped(backend):
    """Paging through a facet-driven list (party) and a scalar one (status) returns every match once."""
    async def body(catalog):
        for i in range(23):
            await catalog.session_started(record(f"s{i:02d}", started=i // 2, status="live" if i % 3 else "complete",
                                                 parties=["caller", "agent"] if i % 2 else ["caller"]))
        out = {}
        for name, f in (("agent", SessionFilters(party="agent")), ("live", SessionFilters(live=True)),
                        ("both", SessionFilters(party="agent", live=True))):
            ids, cursor = [], None
            while True:
                page = await catalog.sessions(f, limit=4, cursor=cursor)
                ids += [item["session_id"] for item in page.items]
                if not (cursor := page.next_cursor):
                    break
            out[name] = ids
        return out

    got = backend.run(body)
    newest_first = sorted(range(23), key=lambda i: (i // 2, f"s{i:02d}"), reverse=True)
    assert got["agent"] == [f"s{i:02d}" for i in newest_first if i % 2]
    assert got["live"] == [f"s{i:02d}" for i in newest_first if i % 3]
    assert got["both"] == [f"s{i:02d}" for i in newest_first if i % 2 and i % 3]


def test_an_item_is_the_listed_session_json_with_alert_counts(backend):
    async def body(catalog):
        await _load(catalog)
        return (await catalog.sessions(SessionFilters(status="interrupted"))).items[0]

    item = backend.run(body)
    doc = SESSIONS[2][0]
    for key, value in doc.items():
        if key != "parameters":  # large and the same for every session: GET /api/sessions/{id} has them
            assert item[key] == value, key
    assert "parameters" not in item
    assert (item["alerts"], item["open_alerts"], item["live"], item["replay"]) == (2, 2, False, False)


@pytest.mark.parametrize(("doc", "replay"), [
    (record("r1", replay=True, source="replay", replay_of="x"), True),
    (record("r2", metadata={"replay": True}), True),
    (record("r3", source="replay"), True),
    (record("r4", metadata={"replay": "yes"}), False),
])
def test_replayed_sessions_are_marked(backend, doc, replay):
    async def body(catalog):
        await catalog.session_started(doc)
        return await catalog.session(doc["session_id"])

    assert backend.run(body)["replay"] is replay


def test_query_strings_become_filters():
    request = session_request([
        ("live", "true"), ("from", "2025-03-01"), ("to", "2025-03-02T00:00:00Z"), ("status", "live"),
        ("source", "twilio"), ("context", "med"), ("profile", "medical"), ("party", "agent"), ("alert", "dual"),
        ("unacknowledged", "1"), ("meta", "customer=c1"), ("meta", "note=a=b"), ("limit", "20"), ("cursor", "abc"),
    ])
    assert request.filters == SessionFilters(
        live=True, started_from="2025-03-01T00:00:00.000000+00:00", started_to="2025-03-02T00:00:00.000000+00:00",
        status="live", source="twilio", context="med", profile="medical", party="agent", alert_kind="dual",
        unacknowledged=True, metadata=(("customer", "c1"), ("note", "a=b")))
    assert (request.limit, request.cursor) == (20, "abc")
    assert session_request([("limit", "9999")]).limit == 500
    assert session_request([]).filters == SessionFilters()


@pytest.mark.parametrize(("items", "says"), [
    ([("alert", "scary")], "alert must be one of review, flagged, dual, withheld"),
    ([("from", "yesterday")], "from must be an ISO 8601 time"),
    ([("to", "2025-13-01")], "to must be an ISO 8601 time"),
    ([("live", "maybe")], "live must be true or false"),
    ([("meta", "customer")], "meta takes key=value"),
    ([("meta", "=x")], "meta takes key=value"),
    ([("status", "live"), ("status", "complete")], "status may be given once"),
    ([("limit", "ten")], "limit must be a whole number"),
    ([("limit", "0")], "limit must be a whole number from 1"),
    ([("context", "x" * 300)], "context must be text of at most 256 characters"),
    ([("sort", "asc")], "unknown parameter 'sort'"),
    ([("started_from", "2025-01-01")], "unknown parameter 'started_from'"),
])
def test_malformed_filters_are_bad_filter_and_say_what_to_fix(items, says):
    with pytest.raises(CatalogQueryError) as info:
        session_request(items)
    assert info.value.code == "bad_filter" and says in info.value.message


def test_filters_are_checked_when_passed_directly(backend):
    async def body(catalog):
        codes = []
        for f in (SessionFilters(alert_kind="nope"), SessionFilters(started_from="soon"),
                  SessionFilters(metadata=(("k",),)), SessionFilters(party="p" * 300)):
            with pytest.raises(CatalogQueryError) as info:
                await catalog.sessions(f)
            codes.append(info.value.code)
        return codes

    assert backend.run(body) == ["bad_filter"] * 4


def test_the_rarest_filter_drives_the_query(backend):
    """With a common party and a rare status the status index walks; with a rare customer, the metadata."""
    from stream.server.catalog.plan import plan

    async def body(catalog):
        for n in range(30):
            await catalog.session_started(record(f"s{n:02d}", started=n, status="live" if n == 7 else "complete",
                                                 parties=["agent"], metadata={"customer": f"c{n}", "region": "eu"}))
        async with catalog.engine.connect() as conn:
            rare_status = await plan(conn, SessionFilters(party="agent", live=True).checked())
            rare_meta = await plan(conn, SessionFilters(party="agent", metadata=(("region", "eu"), ("customer", "c3"))).checked())
            alone = await plan(conn, SessionFilters(party="agent").checked())
            substring = await plan(conn, SessionFilters(context="x", live=True).checked())  # never counted: common
        pages = [await catalog.sessions(f) for f in (SessionFilters(party="agent", live=True),
                                                       SessionFilters(party="agent", metadata=(("customer", "c3"),)))]
        return rare_status, rare_meta, alone, substring, pages

    rare_status, rare_meta, alone, substring, pages = backend.run(body)
    assert rare_status.drive is False
    assert rare_meta.drive is True and rare_meta.facets[0][0].name == "session_metadata"
    assert len(rare_meta.facets) == 3 and rare_meta.facets[-1][0].name == "parties"
    assert alone.drive is True and len(alone.facets) == 1
    assert substring.drive is False
    assert [[i["session_id"] for i in page.items] for page in pages] == [["s07"], ["s03"]]
