"""The portal over HTTP: sign-in, every page type, links, keyset pages, access."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bot.database import Database
from support.fake_slack import FakeSlack
from support.quorum_server import QuorumServer

from .conftest import ALICE, CLIENT_ID, MALLORY, seed, sign_in


@pytest.fixture
def seeded(portal_server: QuorumServer, fake_slack: FakeSlack):
    return seed(portal_server.runtime.db, fake_slack.team_id)


def test_every_portal_url_redirects_to_sign_in_without_a_session(portal_server: QuorumServer,
                                                                  seeded) -> None:
    with httpx.Client(base_url=portal_server.url) as client:
        for path in ["/portal/", f"/portal/projects/{seeded.public}",
                     f"/portal/decisions/{seeded.refs['old']}", "/portal/models/churn-model",
                     f"/portal/projects/{seeded.private}/audit", "/portal/models"]:
            answer = client.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/portal/login?next="), path
            assert "Secret" not in answer.text


def test_sign_in_with_slack_checks_state_and_sets_a_safe_cookie(
        portal_server: QuorumServer, fake_slack: FakeSlack, seeded) -> None:
    fake_slack.signed_in_user = ALICE
    with httpx.Client(base_url=portal_server.url) as client:
        start = client.get("/portal/login/slack", params={"next": "/portal/models"})
        assert start.status_code == 303
        target = urlsplit(start.headers["location"])
        assert target.path == "/openid/connect/authorize"
        query = parse_qs(target.query)
        assert query["client_id"] == [CLIENT_ID]
        assert query["scope"] == ["openid profile email"]
        assert query["redirect_uri"] == [f"{portal_server.url}/portal/auth/callback"]
        assert query["state"][0] and query["nonce"][0]
        back = httpx.get(start.headers["location"])  # the browser at Slack
        assert back.status_code == 302
        callback = back.headers["location"]
        # A forged state is refused, and the sign-in cannot be replayed afterwards.
        forged = client.get(re.sub(r"state=[^&]+", "state=forged", callback))
        assert forged.status_code == 400 and "state" in forged.text
        assert "quorum_portal" not in forged.cookies or "user" not in forged.text
        again = client.get("/portal/login/slack", params={"next": "/portal/models"})
        callback = httpx.get(again.headers["location"]).headers["location"]
        done = client.get(callback)
        assert done.status_code == 303 and done.headers["location"] == "/portal/models"
        cookie = done.headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
        assert "path=/portal" in cookie.lower() and "max-age=43200" in cookie.lower()
        assert "secure" not in cookie.lower()  # plain http on loopback
        page = client.get("/portal/models")
        assert page.status_code == 200 and "churn-model" in page.text
        assert "Alice Liddell" in page.text
        replay = client.get(callback)
        assert replay.status_code == 400
    token_calls = fake_slack.calls_to("openid.connect.token")
    assert len(token_calls) == 1  # the forged and replayed answers never reached Slack
    assert token_calls[0].args["client_secret"] == "portal-client-secret"


def test_sign_in_refused_for_another_workspace_or_a_cancel(portal_server: QuorumServer,
                                                           fake_slack: FakeSlack) -> None:
    fake_slack.signed_in_user = ALICE
    fake_slack.signed_in_team = "T0OTHER01"
    with httpx.Client(base_url=portal_server.url, follow_redirects=True) as client:
        answer = client.get("/portal/login/slack")
        assert answer.status_code == 400
        assert "another Slack workspace" in answer.text
        assert client.get("/portal/", follow_redirects=False).status_code == 303
    fake_slack.signed_in_user = None  # the person cancels on Slack's page
    with httpx.Client(base_url=portal_server.url, follow_redirects=True) as client:
        answer = client.get("/portal/login/slack")
        assert answer.status_code == 400 and "cancelled" in answer.text


def test_sign_out_needs_the_form_token(alice: httpx.Client) -> None:
    page = alice.get("/portal/")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    assert alice.post("/portal/logout", data={"csrf": "wrong"}).status_code == 400
    assert alice.get("/portal/").url.path == "/portal/"
    out = alice.post("/portal/logout", data={"csrf": token.group(1)})
    assert out.url.path == "/portal/login"
    assert alice.get("/portal/").url.path == "/portal/login"


def test_every_page_type_renders_and_every_link_works(alice: httpx.Client, seeded) -> None:
    refs = seeded.refs
    pages = {
        "/portal/": ["ml-churn"],
        f"/portal/projects/{seeded.public}": ["Latest decisions", refs["new"]],
        f"/portal/projects/{seeded.public}/decisions": [refs["old"], refs["new"], "superseded"],
        f"/portal/decisions/{refs['old']}": ["Superseded by", refs["new"], refs["hypothesis"],
                                            "decision.superseded"],
        f"/portal/projects/{seeded.public}/hypotheses": ["Running", refs["hypothesis"]],
        f"/portal/hypotheses/{refs['hypothesis']}": ["recall@10", refs["old"]],
        f"/portal/projects/{seeded.public}/gates": [refs["gate"], "ds: approve"],
        f"/portal/gates/{refs['gate']}": ["Sign-offs", "U0DSPERSN", "AUC above 0.8"],
        f"/portal/projects/{seeded.public}/risks": [refs["risk"], "<svg class=\"heatmap\"",
                                                   "critical"],
        f"/portal/risks/{refs['risk']}": ["Score over time", "<polyline", "drift seen"],
        f"/portal/projects/{seeded.public}/rituals": ["weekdays 09:30", "Open action items"],
        f"/portal/projects/{seeded.public}/incidents": [refs["incident"], "MTTA",
                                                       "class=\"bar-mttr\""],
        f"/portal/incidents/{refs['incident']}": ["Timeline", "Backfilled", "1 h 0 min"],
        f"/portal/projects/{seeded.public}/audit": ["decision.superseded", "risk.reassessed"],
        "/portal/models": ["churn-model"],
        "/portal/models/churn-model": ["Deployment history", "production", "v3"],
        "/portal/models/churn-model/versions/3": ["Lineage", refs["hypothesis"], refs["new"],
                                                  refs["gate"], refs["promotion"],
                                                  refs["incident"], "class=\"edge\""],
    }
    for path, expected in pages.items():
        answer = alice.get(path)
        assert answer.status_code == 200, (path, answer.text[:300])
        for text in expected:
            assert text in answer.text, (path, text)
        assert answer.headers["content-security-policy"].startswith("default-src 'none'")
        for href in re.findall(r'href="(/portal/[^"]*)"', answer.text):
            target = alice.get(href.replace("&amp;", "&"))
            assert target.status_code == 200, (path, href)


def test_decision_search_and_status_filter_use_the_register(alice: httpx.Client,
                                                            seeded) -> None:
    base = f"/portal/projects/{seeded.public}/decisions"
    found = alice.get(base, params={"q": "calibrated"})
    assert seeded.refs["new"] in found.text and seeded.refs["old"] + "<" not in found.text
    assert "1 decision matching" in found.text
    accepted = alice.get(base, params={"status": "superseded"})
    assert seeded.refs["old"] in accepted.text and f">{seeded.refs['new']}<" not in accepted.text
    too_many = alice.get(base, params={"q": " ".join(f"w{i}" for i in range(20))})
    assert too_many.status_code == 200 and "at most 12 words" in too_many.text


def test_keyset_pages_walk_a_register_without_repeats(alice: httpx.Client,
                                                      portal_server: QuorumServer,
                                                      seeded) -> None:
    from bot.models import Project
    from bot.services import decisions

    with portal_server.runtime.db.session() as session:
        project = session.get(Project, seeded.public)
        for n in range(60):
            decisions.log_decision(session, project, ALICE,
                                   decisions.DecisionDraft(title=f"Bulk decision {n}"))
    seen: list[str] = []
    url = f"/portal/projects/{seeded.public}/decisions"
    while url:
        page = alice.get(url)
        seen += re.findall(r'<a href="/portal/decisions/(D-\d+)">', page.text)
        older = re.search(r'href="([^"]+)" rel="next"', page.text)
        url = older.group(1).replace("&amp;", "&") if older else ""
    assert len(seen) == 62 and len(set(seen)) == 62
    newest = alice.get(f"/portal/projects/{seeded.public}/decisions")
    assert "rel=\"prev\"" not in newest.text
    # A cursor of another project's decision, or junk, shows the newest page.
    junk = alice.get(f"/portal/projects/{seeded.public}/decisions?before=zz")
    assert junk.status_code == 200 and "Bulk decision 59" in junk.text


def test_unknown_records_and_projects_are_404(alice: httpx.Client) -> None:
    for path in ["/portal/decisions/D-999", "/portal/decisions/X-1", "/portal/projects/999",
                 "/portal/models/nope", "/portal/models/nope/versions/bad version"]:
        assert alice.get(path).status_code == 404, path


def test_public_url_links_cards_to_the_portal(portal_server: QuorumServer,
                                              fake_slack: FakeSlack, db: Database) -> None:
    from bot.render import renderer

    seeded = seed(portal_server.runtime.db, fake_slack.team_id)
    cards = fake_slack.wait_for("chat.postMessage", count=5)
    links = [call.args for call in cards if "Open in Quorum" in str(call.args.get("blocks"))]
    assert links, "no card carried an Open in Quorum link"
    expected = f"<{portal_server.url}/portal/decisions/{seeded.refs['old']}|Open in Quorum>"
    assert any(expected in str(args["blocks"]) for args in links)
    assert renderer.public_url == portal_server.url


def test_a_private_project_is_404_for_a_non_member(portal_server: QuorumServer,
                                                   fake_slack: FakeSlack, seeded) -> None:
    private = [f"/portal/projects/{seeded.private}", f"/portal/projects/{seeded.private}/audit",
               f"/portal/projects/{seeded.private}/decisions?q=secret",
               f"/portal/decisions/{seeded.refs['secret']}"]
    mallory = sign_in(portal_server, fake_slack, MALLORY)
    try:
        for path in private:
            answer = mallory.get(path)
            assert answer.status_code == 404, path
            assert "Secret" not in answer.text and "secret-launch" not in answer.text
        front = mallory.get("/portal/")
        assert "ml-churn" in front.text and "secret-launch" not in front.text
    finally:
        mallory.close()
    alice = sign_in(portal_server, fake_slack, ALICE)
    try:
        for path in private:
            assert alice.get(path).status_code == 200, path
        assert "secret-launch" in alice.get("/portal/").text
    finally:
        alice.close()
    asked = fake_slack.calls_to("conversations.members")
    assert {call.args["channel"] for call in asked} == {"G0PRIVAT1"}
    assert len(asked) == 1  # both people, every page: one question, then the cache


def test_unknown_privacy_is_asked_of_slack_and_stored(portal_server: QuorumServer,
                                                      fake_slack: FakeSlack) -> None:
    from bot.models import Project
    from bot.services import decisions

    db = portal_server.runtime.db
    with db.session() as session:
        for channel, name in (("C0OPEN001", "open-talk"), ("C0HUSH001", "hush")):
            project = Project(team_id=fake_slack.team_id, channel_id=channel, name=name)
            session.add(project)
            session.flush()
            decisions.log_decision(session, project, ALICE,
                                   decisions.DecisionDraft(title=f"{name} decision"))
    fake_slack.private_channels.add("C0HUSH001")
    fake_slack.channel_members["C0HUSH001"] = ["U0SOMEONE"]
    alice = sign_in(portal_server, fake_slack, ALICE)
    try:
        front = alice.get("/portal/").text
        assert "open-talk" in front and "hush" not in front
    finally:
        alice.close()
    with db.session() as session:
        stored = {p.channel_id: (p.is_private, p.member_ids)
                  for p in session.query(Project).filter(Project.channel_id.like("C0%"))}
    assert stored["C0OPEN001"] == (False, None)
    assert stored["C0HUSH001"] == (True, ["U0SOMEONE"])


def test_without_an_id_token_userinfo_says_who_signed_in(portal_server: QuorumServer,
                                                         fake_slack: FakeSlack, seeded) -> None:
    fake_slack.issue_id_tokens = False
    client = sign_in(portal_server, fake_slack, ALICE)
    try:
        assert "Alice Liddell" in client.get("/portal/").text
    finally:
        client.close()
    [info] = fake_slack.calls_to("openid.connect.userInfo")
    assert info.token and info.token.startswith("xoxp-")
