"""The portal in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`,
installed by scripts/ensure_chromium.sh) driven by Selenium, signed in through the fake Slack's
OpenID endpoints, on every page type; hostile text stays inert; accessibility basics.

`QUORUM_SCREENSHOTS=1` writes the screenshots to docs/screenshots/ (the README shows them);
otherwise they go to the test's temporary directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.fake_slack import FakeSlack
from support.quorum_server import QuorumServer

from .conftest import ALICE, HOSTILE, MALLORY, Seeded, seed

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
AXE = ROOT / ".cache" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "docs" / "screenshots"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(DRIVER, os.X_OK)):
        pytest.fail("chromium and chromium-driver are not installed: run "
                    "scripts/ensure_chromium.sh (make test does)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,900", "--disable-extensions"):
        options.add_argument(flag)
    # The driver's path is given: Selenium Manager would try to download one.
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def sign_in(driver: webdriver.Chrome, server: QuorumServer, fake: FakeSlack, user: str,
            start: str = "/portal/") -> None:
    """Through the sign-in page's button, Slack's (fake) authorize page and the callback."""
    driver.delete_all_cookies()
    fake.signed_in_user = user
    driver.get(server.url + start)
    assert "/portal/login" in driver.current_url
    driver.find_element(By.LINK_TEXT, "Sign in with Slack").click()
    assert driver.current_url == server.url + start, driver.current_url


def pages(seeded: Seeded) -> dict[str, str]:
    """One URL of every page type, by a name for its screenshot."""
    r, p = seeded.refs, seeded.public
    return {
        "projects": "/portal/",
        "project": f"/portal/projects/{p}",
        "decisions": f"/portal/projects/{p}/decisions",
        "decision": f"/portal/decisions/{r['old']}",
        "hypotheses": f"/portal/projects/{p}/hypotheses",
        "hypothesis": f"/portal/hypotheses/{r['hypothesis']}",
        "gates": f"/portal/projects/{p}/gates",
        "gate": f"/portal/gates/{r['gate']}",
        "risks": f"/portal/projects/{p}/risks",
        "risk": f"/portal/risks/{r['risk']}",
        "rituals": f"/portal/projects/{p}/rituals",
        "incidents": f"/portal/projects/{p}/incidents",
        "incident": f"/portal/incidents/{r['incident']}",
        "audit": f"/portal/projects/{p}/audit",
        "models": "/portal/models",
        "model": "/portal/models/churn-model",
        "version": "/portal/models/churn-model/versions/3",
    }


def screenshot(driver: webdriver.Chrome, name: str, directory: Path) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(900, int(height)), 2400))
    directory.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(directory / f"portal-{name}.png"))
    driver.set_window_size(1280, 900)


def test_sign_in_and_browse_every_page_type(browser: webdriver.Chrome,
                                            portal_server: QuorumServer, fake_slack: FakeSlack,
                                            database_url: str, tmp_path: Path) -> None:
    seeded = seed(portal_server.runtime.db, fake_slack.team_id)
    sign_in(browser, portal_server, fake_slack, ALICE)
    assert "Alice Liddell" in browser.find_element(By.TAG_NAME, "header").text
    keep = os.environ.get("QUORUM_SCREENSHOTS") and database_url.startswith("sqlite")
    for name, path in pages(seeded).items():
        browser.get(portal_server.url + path)
        assert browser.current_url == portal_server.url + path, name
        heading = browser.find_element(By.TAG_NAME, "h1").text
        assert heading and "Not found" not in heading, name
        screenshot(browser, name, SCREENSHOTS if keep else tmp_path)
        # Every link on the page leads somewhere that answers.
        hrefs = {a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR,
                                                                       "main a[href], nav a")}
        for href in sorted(h for h in hrefs if h and h.startswith(portal_server.url)):
            browser.get(href)
            assert "Not found" not in browser.title, (name, href)
    # The private project is the member's to see.
    browser.get(f"{portal_server.url}/portal/decisions/{seeded.refs['secret']}")
    assert "Secret launch plan" in browser.find_element(By.TAG_NAME, "h1").text
    # Clicking through: the decision log's first entry, then its hypothesis.
    browser.get(f"{portal_server.url}/portal/projects/{seeded.public}/decisions")
    browser.find_element(By.LINK_TEXT, seeded.refs["old"]).click()
    browser.find_element(By.LINK_TEXT, seeded.refs["hypothesis"]).click()
    assert browser.current_url.endswith(f"/portal/hypotheses/{seeded.refs['hypothesis']}")
    # Signing out ends the session: the next page asks to sign in again.
    browser.find_element(By.CSS_SELECTOR, "header form button").click()
    # The sign-out POST lands on the sign-in page; only then is the session cookie gone.
    WebDriverWait(browser, 10).until(lambda driver: "/portal/login" in driver.current_url)
    browser.get(f"{portal_server.url}/portal/")
    assert "/portal/login" in browser.current_url


INERT = """
// SVG links too (their `href` is not a string): every target, resolved against the page.
const links = [...document.querySelectorAll('a[href]')]
  .map(a => new URL(a.getAttribute('href'), location.href).href);
return {
  pwned: window.__pwned || null,
  scripts: document.scripts.length,
  handlers: document.querySelectorAll('[onerror],[onfocus],[onload],[onclick]').length,
  images: document.images.length,
  badLinks: links.filter(h => !/^https?:/i.test(h)),
};
"""


def test_hostile_text_renders_inert(browser: webdriver.Chrome, portal_server: QuorumServer,
                                    fake_slack: FakeSlack) -> None:
    seeded = seed(portal_server.runtime.db, fake_slack.team_id, hostile=HOSTILE)
    fake_slack.users[ALICE] = {"real_name": "Alice <script>window.__pwned=1</script>"}
    sign_in(browser, portal_server, fake_slack, ALICE)
    for name, path in pages(seeded).items():
        browser.get(portal_server.url + path)
        found = browser.execute_script(INERT)
        assert found == {"pwned": None, "scripts": 0, "handlers": 0, "images": 0,
                         "badLinks": []}, (name, found)
    # The text itself is shown, as text.
    browser.get(f"{portal_server.url}/portal/decisions/{seeded.refs['old']}")
    assert "<script>window.__pwned=1</script>" in browser.find_element(By.TAG_NAME, "h1").text
    assert "javascript:window.__pwned=1" in browser.find_element(By.TAG_NAME, "main").text
    assert "<script>" in browser.find_element(By.TAG_NAME, "header").text


def test_private_project_is_404_for_a_non_member(browser: webdriver.Chrome,
                                                 portal_server: QuorumServer,
                                                 fake_slack: FakeSlack) -> None:
    from bot.models import Project

    if not hasattr(Project, "is_private"):
        pytest.fail("Project.is_private is missing: merge the access branch")
    seeded = seed(portal_server.runtime.db, fake_slack.team_id)
    sign_in(browser, portal_server, fake_slack, MALLORY)
    private = [f"/portal/projects/{seeded.private}", f"/portal/projects/{seeded.private}/audit",
               f"/portal/projects/{seeded.private}/decisions",
               f"/portal/decisions/{seeded.refs['secret']}"]
    for path in private:
        browser.get(portal_server.url + path)
        assert browser.find_element(By.TAG_NAME, "h1").text == "Not found", path
        assert "Secret" not in browser.page_source
    browser.get(portal_server.url + "/portal/")
    assert "secret-launch" not in browser.page_source and "ml-churn" in browser.page_source
    members = fake_slack.calls_to("conversations.members")
    assert members and all(c.args["channel"] == "G0PRIVAT1" for c in members)
    assert len(members) == 1  # cached: one question to Slack for all those pages


LANDMARKS = """
const unlabeled = [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'));
const navs = [...document.querySelectorAll('nav')].filter(n => !n.getAttribute('aria-label'));
const svgs = [...document.querySelectorAll('svg')]
  .filter(s => !['img', 'group'].includes(s.getAttribute('role')) || !s.querySelector('title'));
return {lang: document.documentElement.lang, main: document.querySelectorAll('main').length,
        header: document.querySelectorAll('header').length,
        h1: document.querySelectorAll('h1').length, unlabeled: unlabeled.length,
        unnamedNavs: navs.length, svgsWithoutTitle: svgs.length,
        title: document.title.length > 0};
"""


def test_accessibility_basics(browser: webdriver.Chrome, portal_server: QuorumServer,
                              fake_slack: FakeSlack) -> None:
    seeded = seed(portal_server.runtime.db, fake_slack.team_id)
    sign_in(browser, portal_server, fake_slack, ALICE)
    axe = AXE.read_text() if AXE.exists() else None
    violations: dict[str, Any] = {}
    for name, path in pages(seeded).items():
        browser.get(portal_server.url + path)
        basics = browser.execute_script(LANDMARKS)
        assert basics == {"lang": "en", "main": 1, "header": 1, "h1": 1, "unlabeled": 0,
                          "unnamedNavs": 0, "svgsWithoutTitle": 0, "title": True}, (name, basics)
        if axe is None:
            continue
        browser.execute_script(axe)
        result = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa']}})"
            ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, "
            "nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))))"
            ".catch(e => done([{id: 'axe-error', impact: String(e), nodes: []}]));")
        if result:
            violations[name] = result
    assert not violations, json.dumps(violations, indent=1)
    if axe is None:
        pytest.skip("axe-core is not installed (scripts/ensure_chromium.sh installs it with "
                    "npm); the landmark, label and SVG checks above passed")
