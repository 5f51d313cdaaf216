"""The console in a real browser: Debian's Chromium, driven by Playwright (never a browser
download of its own). Sign in, the seed's four questions, an event's diff, a receipt
verified in the browser (and a tampered one refused), timeline and state, a CSV export,
log status, the meta-audit, sign-out, a phone-sized screen, the keyboard alone, and a
second tenant that sees none of the first's events.

Each page is saved as a screenshot; `make screenshots` refreshes the ones in docs/img/
(the README shows them). One browser for the module,
one fresh context (cookies, storage) per test.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright
from psycopg import AsyncConnection

from tests.support import Tenant
from tests.ui.conftest import CHROMIUM, IMAGES, Seeded, in_thread
from trailseal import ingest
from trailseal.integrity.checkpoint import log_origin
from trailseal.integrity.notes import generate_key
from trailseal.runtime import load_signer
from trailseal.settings import Settings
from trailseal.status import record_run
from trailseal.verify import Report, verify_tenant
from trailseal.witness import WormFolder

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser(acme: Seeded, stranger: Tenant) -> Iterator[Browser]:
    # The tenants first: making them needs asyncio, which the browser's loop would block.
    assert CHROMIUM.exists(), (
        "the console tests drive Debian's Chromium at /usr/bin/chromium: "
        "apt-get install chromium (make test installs it)"
    )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, service_url: str) -> Iterator[Page]:
    context = browser.new_context(base_url=service_url, viewport=DESKTOP, accept_downloads=True)
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.on("console", lambda message: problems.append(message.text)
              if message.type == "error" and "Content Security Policy" in message.text else None)
    yield opened
    context.close()
    # The pages run under a strict CSP: nothing of theirs (htmx included) may break it.
    assert problems == []


def shot(page: Page, name: str, *, full_page: bool = True) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=IMAGES / f"{name}.png", full_page=full_page, caret="initial",
                    animations="disabled")


def sign_in(page: Page, token: str) -> None:
    page.goto("/ui/")
    page.fill("#token", token)
    page.click("form[action='/ui/sign-in'] button[type=submit]")
    expect(page.locator("h1")).to_have_text("Search")


def rows(page: Page):  # type: ignore[no-untyped-def]
    return page.locator("#results table.events tbody tr")


def tab_to(page: Page, selector: str, most: int = 60) -> None:
    """Press Tab until ``selector`` has the focus."""
    for _ in range(most):
        page.keyboard.press("Tab")
        if page.evaluate("s => !!document.activeElement?.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


def local(moment) -> str:  # type: ignore[no-untyped-def]
    """A moment as a datetime-local input takes it (UTC)."""
    return moment.strftime("%Y-%m-%dT%H:%M")


def barrier(service_url: str, tenant: Tenant) -> None:
    """Wait until every record already in the tenant's inbox is in its log: the sequencer
    takes the inbox in order, so an event sent now is sequenced after them."""
    r = httpx.post(f"{service_url}/v1/events?wait=sequenced", headers=tenant.auth("ingest"),
                   json={"actor": {"type": "system", "id": "tests"}, "action": "test.barrier",
                         "target": {"type": "test", "id": "barrier"}}, timeout=30)
    assert r.status_code == 201, r.text


def test_sign_in_and_search_with_the_keyboard_only(page: Page, acme: Seeded):
    page.goto("/ui/")
    expect(page).to_have_url(re.compile(r"/ui/sign-in\?next=%2Fui%2F$"))
    expect(page.locator("#token")).to_be_focused()
    shot(page, "sign-in", full_page=False)
    page.keyboard.type(acme.tenant.tokens["read"])
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("tenant")).to_have_text(acme.tenant.name)
    # A read-only key: no export, no meta-audit.
    expect(page.get_by_role("link", name="Export", exact=True)).to_have_count(0)
    expect(page.get_by_role("link", name="Meta-audit")).to_have_count(0)

    tab_to(page, "#f-action")
    page.keyboard.type("auth.login.failed")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/ui/\?action=auth\.login\.failed$"))
    expect(rows(page)).to_have_count(5)
    tab_to(page, "#results tbody tr:first-child a.event-link")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/ui/events/[0-9a-f-]{36}$"))
    expect(page.locator("h1")).to_contain_text("auth.login.failed")
    tab_to(page, "#verify-button")
    page.keyboard.press("Enter")
    expect(page.locator("#verify-verdict")).to_have_text(re.compile("^✓ Verified"))


def test_the_four_questions(page: Page, acme: Seeded):
    sign_in(page, acme.tenant.token)
    shot(page, "search", full_page=False)

    # 1. Changes to a user in the last 30 days.
    page.fill("#f-target_type", "user")
    page.fill("#f-target_id", "u_4004")
    page.select_option("#f-range", "30d")
    page.click("#search button[type=submit]")
    expect(page).to_have_url(re.compile(r"/ui/\?target_type=user&target_id=u_4004&range=30d$"))
    expect(rows(page)).to_have_count(10)

    # 2. Who changed this setting, and when.
    page.goto("/ui/?target_type=setting&target_id=billing.plan&action=setting.*")
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_contain_text("Carol Chen")

    # 3. Failed logins from this address range.
    page.goto("/ui/")
    page.fill("#f-action", "auth.login.failed")
    page.select_option("#f-outcome", "failure")
    page.fill("#f-ip", "192.0.2.0/24")
    page.click("#search button[type=submit]")
    third = re.compile(r"/ui/\?action=auth\.login\.failed&outcome=failure&ip=192\.0\.2\.0%2F24$")
    expect(page).to_have_url(third)
    expect(rows(page)).to_have_count(5)
    expect(rows(page).locator(".badge.fail")).to_have_count(5)
    shot(page, "search-results")

    # 4. Data exports that people (users, not services) made in a period.
    now = ingest.now()
    page.fill("#f-ip", "")
    page.select_option("#f-outcome", "")
    page.fill("#f-action", "data.export.*")
    page.click("details.more summary")
    page.select_option("#f-actor_type", "user")
    page.select_option("#f-range", "custom")
    page.fill("#f-since", local(now - timedelta(days=11)))
    page.fill("#f-until", local(now + timedelta(minutes=5)))
    page.click("#search button[type=submit]")
    expect(page).to_have_url(re.compile(r"action=data\.export\.\*&range=custom&since=.+"
                                        r"&until=.+&actor_type=user$"))
    expect(rows(page)).to_have_count(4)
    expect(rows(page).filter(has_text="Carol Chen")).to_have_count(1)

    # The URL is the search: the back button brings the previous one back.
    page.go_back()
    expect(page).to_have_url(third)
    expect(rows(page)).to_have_count(5)
    expect(page.locator("#f-ip")).to_have_value("192.0.2.0/24")


def test_an_events_detail_diff_and_links(page: Page, acme: Seeded):
    sign_in(page, acme.tenant.token)
    page.goto(f"/ui/events/{acme.first('user.profile.updated', 'u_4004')}")
    expect(page.locator("table.diff tbody tr")).to_have_count(3)
    email, phone, nickname = (page.locator(f"tr[data-field={f}]")
                              for f in ("email", "phone", "nickname"))
    expect(email).to_have_class("diff-changed")
    expect(email.locator(".before")).to_contain_text('"dave@contractor.example"')
    expect(email.locator(".after")).to_contain_text('"dave.diaz@contractor.example"')
    expect(phone).to_have_class("diff-added")
    expect(phone.locator(".before")).to_have_text("(none)")
    expect(nickname).to_have_class("diff-removed")
    expect(nickname.locator(".after")).to_have_text("(none)")
    expect(page.get_by_text("203.0.113.12")).to_be_visible()  # the request context

    page.get_by_role("link", name="Target's timeline and state").click()
    expect(page).to_have_url(re.compile(r"/ui/targets/user/u_4004$"))
    page.go_back()
    page.get_by_role("link", name="Everything this actor did").click()
    expect(page).to_have_url(re.compile(r"/ui/\?actor_id=u_3003$"))
    expect(rows(page)).to_have_count(5)

    # The plan upgrade: four services, one correlation id.
    page.goto(f"/ui/events/{acme.first('setting.updated', 'billing.plan')}")
    page.get_by_role("link", name="Events with this correlation id").click()
    expect(page).to_have_url(re.compile(r"/ui/\?correlation_id=corr_7f3a9c$"))
    expect(rows(page)).to_have_count(4)
    for service in ("web", "billing", "provisioning", "notifier"):
        expect(rows(page).filter(has_text=service)).not_to_have_count(0)


def test_a_receipt_is_verified_in_the_browser_and_a_tampered_one_is_not(
    page: Page, acme: Seeded
):
    sign_in(page, acme.tenant.token)
    page.goto(f"/ui/events/{acme.first('user.role.updated', 'u_4004')}")
    key = page.locator("#verifier-key")
    expect(key).to_have_value(re.compile(r"^audit\.test/trailseal\+[0-9a-f]{8}\+A"))
    expect(page.locator("#key-origin")).to_contain_text("Fetched from this server")
    served = key.input_value()
    verdict, steps = page.locator("#verify-verdict"), page.locator("#verify-steps li")

    page.click("#verify-button")
    expect(verdict).to_have_text(
        "✓ Verified: this event is in the log under the signed checkpoint.")
    expect(steps).to_have_count(7)
    expect(page.locator("#verify-steps li.fail")).to_have_count(0)
    expect(page.locator("#verify-canonical")).to_contain_text('"action":"user.role.updated"')
    shot(page, "event")

    # The same receipt with one byte of the event changed on its way to the browser.
    def tampered(route: Route) -> None:
        response = route.fetch()
        receipt = response.json()
        receipt["event"]["changes"]["role"]["after"] = "admin"
        route.fulfill(response=response, body=json.dumps(receipt))

    page.route("**/receipt", tampered)
    page.click("#verify-button")
    expect(verdict).to_have_text(
        "✗ Not verified: The event does not lead to the signed root: this event, or its "
        "receipt, was altered after it was logged.")
    expect(page.locator("#verify-steps li.fail")).to_have_count(1)
    page.unroute("**/receipt")

    # A key other than the log's (one whose base64 holds a "+", which the key's own
    # separators must not be confused with): the checkpoint carries no signature of it.
    other = next(k for k in (generate_key("audit.test/trailseal")[1] for _ in range(200))
                 if k.count("+") > 2)
    page.fill("#verifier-key", other)
    page.click("#verify-button")
    expect(verdict).to_contain_text("no signature by this verifier key")

    # A pinned key survives reloads, and wins over whatever the server offers.
    page.fill("#verifier-key", served)
    page.click("#pin-key")
    expect(page.locator("#key-origin")).to_contain_text("Pinned in this browser")
    assert page.evaluate("localStorage.getItem('trailseal.pinnedVerifierKey')") == served
    page.reload()
    expect(page.locator("#key-origin")).to_contain_text("Pinned in this browser")
    page.click("#verify-button")
    expect(verdict).to_contain_text("✓ Verified")
    page.click("#forget-key")
    assert page.evaluate("localStorage.getItem('trailseal.pinnedVerifierKey')") is None


def test_a_targets_timeline_and_state_as_of_a_moment(page: Page, acme: Seeded):
    sign_in(page, acme.tenant.token)
    page.goto("/ui/targets/user/u_4004")
    expect(page.locator("h1")).to_contain_text("Dave Diaz")
    expect(page.locator(".timeline > li")).to_have_count(10)
    state = page.get_by_test_id("state")
    expect(state).to_contain_text('"dave.diaz@contractor.example"')
    expect(state).to_contain_text('"editor"')
    expect(state).to_contain_text("+44 20 7946 0958")
    shot(page, "target")

    page.fill("#f-at", local(ingest.now() - timedelta(days=12)))
    page.click("form.as-of button[type=submit]")
    expect(page).to_have_url(re.compile(r"/ui/targets/user/u_4004\?at="))
    expect(state).to_contain_text("from the changes of 1 event")
    expect(state).to_contain_text('"dave@contractor.example"')
    expect(state).to_contain_text('"viewer"')
    expect(state).not_to_contain_text("+44")


def test_export_csv_of_the_current_filter(page: Page, acme: Seeded):
    sign_in(page, acme.tenant.token)
    page.goto("/ui/?action=auth.login.failed")
    page.get_by_role("link", name="Export these results").click()
    expect(page).to_have_url(re.compile(r"/ui/export\?action=auth\.login\.failed$"))
    shot(page, "export")
    with page.expect_download() as started:
        page.click("a[data-format=csv]")
    download = started.value
    assert re.fullmatch(rf"trailseal-{acme.tenant.name}-\d{{8}}T\d{{6}}Z\.csv",
                        download.suggested_filename)
    table = list(csv.reader(io.StringIO(Path(download.path()).read_text())))
    assert table[0][:4] == ["seq", "id", "occurred_at", "received_at"]
    assert len(table) == 6
    action = table[0].index("action")
    assert {row[action] for row in table[1:]} == {"auth.login.failed"}

    with page.expect_download() as started:
        page.click("form.bundle-form button[type=submit]")
    assert started.value.suggested_filename.endswith("-bundle.zip")


def _verify_and_record(database_url: str, settings: Settings, tenant: str) -> Report:
    async def go() -> Report:
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            report = await verify_tenant(
                conn, tenant, [load_signer(settings).verifier()],
                origin=log_origin("audit.test", tenant),
                witness=WormFolder(settings.data_dir / "witness"), database_url=database_url,
            )
            await record_run(conn, report)
            return report

    return asyncio.run(go())


def test_log_status_and_the_meta_audit(
    page: Page, acme: Seeded, service_url: str, database_url: str, settings: Settings
):
    sign_in(page, acme.tenant.token)
    page.goto("/ui/log")
    expect(page.get_by_test_id("verified")).to_contain_text("Never verified here")
    report = in_thread(_verify_and_record, database_url, settings, acme.tenant.name)
    assert report.ok, report.finding
    page.reload()
    expect(page.get_by_test_id("checkpoint")).to_contain_text("events")
    expect(page.get_by_test_id("checkpoint").locator(".hash")).to_have_text(
        re.compile(r"^[A-Za-z0-9+/]{43}=$"))
    expect(page.get_by_test_id("witness")).to_contain_text("yes")
    expect(page.get_by_test_id("verified")).to_contain_text("✓ Clean")
    expect(page.get_by_test_id("verified")).to_contain_text(f"{report.events:,} events")
    shot(page, "log-status")

    page.goto("/ui/?action=data.export.*&outcome=failure")
    expect(rows(page)).to_have_count(1)
    barrier(service_url, acme.tenant)
    page.goto("/ui/meta")
    searched = page.locator("table.meta tbody tr").filter(has_text="data.export.*")
    expect(searched.first).to_contain_text("searched")
    expect(searched.first).to_contain_text("outcome=failure")
    expect(searched.first).to_contain_text("default")  # the key's name
    page.select_option("#f-meta-action", "audit.events.read")
    page.click("form.inline-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/ui/meta\?action=audit\.events\.read$"))
    shot(page, "meta-audit")


def test_sign_out_ends_the_session(page: Page, acme: Seeded):
    sign_in(page, acme.tenant.token)
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/ui/sign-in\?ended=signed-out$"))
    expect(page.get_by_role("status")).to_have_text("You are signed out.")
    assert [c for c in page.context.cookies() if c["name"] == "trailseal_console"] == []
    page.goto(f"/ui/events/{acme.first('user.role.updated', 'u_2002')}")
    expect(page).to_have_url(re.compile(r"/ui/sign-in\?next="))
    # Back does not bring the signed-in pages back from a cache.
    page.go_back()
    expect(page).to_have_url(re.compile(r"/ui/sign-in"))


def test_another_tenant_sees_none_of_these_events(page: Page, acme: Seeded, stranger: Tenant):
    sign_in(page, stranger.token)
    expect(page.get_by_test_id("tenant")).to_have_text(stranger.name)
    expect(rows(page)).to_have_count(1)
    expect(rows(page)).to_contain_text("Olga Other")
    page.goto("/ui/?q=Dave")
    expect(page.get_by_test_id("empty")).to_contain_text("No events match")
    shot(page, "search-empty", full_page=False)
    event = acme.first("user.role.updated", "u_2002")
    page.goto(f"/ui/events/{event}")
    expect(page.locator(".error-state")).to_contain_text("No such event")
    assert page.evaluate(f"fetch('/ui/events/{event}/receipt').then(r => r.status)") == 404
    page.goto("/ui/targets/user/u_4004")
    expect(page.locator(".error-state")).to_contain_text("No such target")
    page.goto("/ui/?correlation_id=corr_7f3a9c&include_meta=true")
    expect(page.get_by_test_id("empty")).to_be_visible()
    page.goto("/ui/meta")
    expect(page.locator("body")).not_to_contain_text(acme.tenant.name)


def test_a_phone_sized_screen(page: Page, acme: Seeded):
    page.set_viewport_size(PHONE)
    sign_in(page, acme.tenant.token)
    page.goto("/ui/?action=auth.login.*")
    expect(rows(page)).not_to_have_count(0)
    fits = "document.documentElement.scrollWidth <= window.innerWidth"
    assert page.evaluate(fits)
    # Each event is a card: its cells stack, each with its label.
    first = rows(page).first.locator("td").first
    assert page.evaluate("e => getComputedStyle(e).display", first.element_handle()) == "flex"
    page.locator("#results").scroll_into_view_if_needed()
    shot(page, "search-phone", full_page=False)
    page.goto(f"/ui/events/{acme.first('user.profile.updated', 'u_4004')}")
    assert page.evaluate(fits)
    page.click("#verify-button")
    expect(page.locator("#verify-verdict")).to_contain_text("✓ Verified")
    shot(page, "event-phone")
    page.set_viewport_size(DESKTOP)


def test_a_link_from_another_site_opens_in_the_session(page: Page, acme: Seeded,
                                                       service_url: str):
    sign_in(page, acme.tenant.token)
    event = acme.first("user.role.updated", "u_2002")
    target = f"{service_url}/ui/events/{event}"
    # A page of another site (localhost is not 127.0.0.1's site) that links to the event:
    # SameSite=Strict keeps the session cookie off that navigation.
    elsewhere = service_url.replace("127.0.0.1", "localhost") + "/elsewhere"
    page.route(elsewhere, lambda route: route.fulfill(
        content_type="text/html", body=f'<a id="go" href="{target}">the event</a>'))
    page.goto(elsewhere)
    arrivals: list[int] = []  # each load of the event's address
    page.on("response", lambda r: arrivals.append(r.status) if r.url == target else None)
    page.click("#go")
    expect(page).to_have_url(target)
    expect(page.locator("h1")).to_contain_text("user.role.updated")
    # It arrived from the other site without the session (the resume page, whose body a
    # reload discards, so it is told by its count), then reopened itself with it.
    assert arrivals == [200, 200]
