"""Drives `octopus console` in a real headless Chromium (Debian's chromium,
chromium-driver and python3-selenium). Started by console_browser.rs, which
runs the registry, the console and the registered instances; this script talks
back on stdout ("STEP crash": abandon the crashy instance now; "STEP restart":
restart the console, and the registry if it can, then answer "restarted" on stdin).

usage: console_browser.py CONSOLE_URL TOKEN OCTOPUS_BIN REGISTRY_URL [SCREENSHOT]
"""

import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

url, token, octopus, registry = sys.argv[1:5]
screenshot = sys.argv[5] if len(sys.argv) > 5 else None
port = url.rstrip("/").rsplit(":", 1)[1]


def say(*words):
    print(*words, flush=True)


def fail(message):
    raise AssertionError(message)


def browser(profile):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,800",
        "--user-data-dir=" + profile,
        # A DNS-rebinding attacker's name that resolves to the console.
        "--host-resolver-rules=MAP evil.test 127.0.0.1",
    ]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def severe(driver, allowed=()):
    """The browser console's errors since the last call, less the expected ones."""
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return [e for e in errors if not any(a in e["message"] for a in allowed)]


def cell(driver, service_or_id, column):
    """The text of a column of the instance row with that id."""
    rows = driver.find_elements(By.CSS_SELECTOR, '#instances tbody tr[data-id="%s"]' % service_or_id)
    if not rows:
        return None
    return rows[0].find_elements(By.TAG_NAME, "td")[column].text


def wait(driver, seconds, what, check):
    try:
        # The page re-renders its tables on every update: an element found a
        # moment ago may be gone; look again.
        return WebDriverWait(driver, seconds, poll_frequency=0.05,
                             ignored_exceptions=[StaleElementReferenceException]).until(lambda d: check(d))
    except Exception as e:  # selenium's TimeoutException carries no message
        fail("waited %ss for %s: %s" % (seconds, what, type(e).__name__))


def state_of(instance_id):
    out = subprocess.run([octopus, "get", "users/" + instance_id, "--registry", registry, "--json"],
                         capture_output=True, text=True, check=True).stdout
    return "draining" if json.loads(out)["draining"] else "serving"


with tempfile.TemporaryDirectory() as profile:
    driver = browser(profile)
    try:
        driver.get(url)
        # A token is set: the page asks for it and shows nothing before.
        wait(driver, 10, "the login form", lambda d: d.find_element(By.ID, "login").is_displayed())
        if driver.find_elements(By.CSS_SELECTOR, "#services tbody tr"):
            fail("services listed before the token was given")

        # A write without the token, from the page's own origin: refused, nothing changes.
        status = driver.execute_async_script(
            "const done = arguments[0];"
            "fetch('/api/services/users/instances/u1/drain', {method: 'POST',"
            " headers: {'Content-Type': 'application/json'}, body: '{}'}).then(r => done(r.status));")
        if status != 401:
            fail("a write without the token answered %s, not 401" % status)
        if state_of("u1") != "serving":
            fail("a refused write changed the registry")
        errors = severe(driver, allowed=["401"])
        if errors:
            fail("browser console errors: %s" % errors)

        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()
        wait(driver, 10, "every service listed", lambda d: {
            r.get_attribute("data-service") for r in d.find_elements(By.CSS_SELECTOR, "#services tbody tr")
        } >= {"users", "orders", "crashy", "xss"})
        say("services listed")

        # The instances of a service, by their ids.
        driver.find_element(By.CSS_SELECTOR, '#services tr[data-service="users"]').click()
        wait(driver, 10, "users' instances", lambda d: cell(d, "u1", 2) == "serving" and cell(d, "u2", 2) == "serving")
        if "service=users" not in driver.current_url:
            fail("the open service is not in the URL: " + driver.current_url)

        # A drain made with the CLI shows within 2 s, without a reload; an undrain likewise.
        marker = driver.execute_script("window.__same_page = 1; return 1;")
        for verb, state in [("drain", "draining"), ("undrain", "serving")]:
            started = time.monotonic()
            subprocess.run([octopus, verb, "users/u1", "--registry", registry], check=True, capture_output=True)
            wait(driver, 2, "the %s on the page" % verb, lambda d: cell(d, "u1", 2) == state)
            say("%s seen in %.0f ms" % (verb, (time.monotonic() - started) * 1000))
            wait(driver, 2, "the %s in the timeline" % verb, lambda d: d.find_elements(
                By.CSS_SELECTOR, '#timeline li[data-kind="%s"]' % (verb + "ed")))
        if driver.execute_script("return window.__same_page") != marker:
            fail("the page reloaded")

        # Registrant HTML is text: shown as written, nothing runs, no element made.
        driver.find_element(By.CSS_SELECTOR, '#services tr[data-service="xss"]').click()
        wait(driver, 10, "the xss instance", lambda d: cell(d, "x1", 6) is not None)
        meta = cell(driver, "x1", 6)
        if "<img src=x onerror=" not in meta:
            fail("the metadata is not shown as text: %r" % meta)
        if driver.find_elements(By.CSS_SELECTOR, "#instances img, #instances script, #timeline img"):
            fail("registrant HTML became elements")
        if driver.execute_script("return window.__pwned === undefined") is not True:
            fail("registrant script ran")

        # A crash: the lease runs out, and the timeline says so with its revision.
        driver.find_element(By.CSS_SELECTOR, '#services tr[data-service="crashy"]').click()
        wait(driver, 10, "crashy's lease read", lambda d: (cell(d, "c1", 7) or "").endswith(" s"))
        say("STEP crash")
        item = wait(driver, 30, "the expiry in the timeline", lambda d: d.find_elements(
            By.CSS_SELECTOR, '#timeline li[data-kind="expired"]'))
        if int(item[0].get_attribute("data-revision")) <= 0:
            fail("the expiry has no revision")
        if not driver.find_elements(By.CSS_SELECTOR, '#timeline li[data-kind="registered"]'):
            fail("the registration is not in the timeline")

        # Filters live in the URL and survive a reload.
        driver.get(url + "?q=orders")
        wait(driver, 10, "the filtered list", lambda d: [
            r.get_attribute("data-service") for r in d.find_elements(By.CSS_SELECTOR, "#services tbody tr")
        ] == ["orders"])

        errors = severe(driver)
        if errors:
            fail("browser console errors: %s" % errors)

        if screenshot:
            driver.get(url + "?service=users")
            wait(driver, 10, "users' instances", lambda d: cell(d, "u2", 2) is not None)
            driver.save_screenshot(screenshot)

        # The console restarts (and the registry too, when it is a real etcd):
        # the page reconnects, reads everything again and goes on, no reload.
        driver.get(url + "?service=users")
        wait(driver, 10, "users' instances", lambda d: cell(d, "u2", 2) == "serving")
        marker = driver.execute_script("window.__same_page = 2; return 2;")
        say("STEP restart")
        if sys.stdin.readline().strip() != "restarted":
            fail("the harness did not restart the console")
        started = time.monotonic()
        subprocess.run([octopus, "drain", "users/u2", "--registry", registry], check=True, capture_output=True)
        wait(driver, 30, "the drain after the restart", lambda d: cell(d, "u2", 2) == "draining")
        say("resumed after the restart: a drain seen %.0f ms after it was made" % ((time.monotonic() - started) * 1000))
        if driver.execute_script("return window.__same_page") != marker:
            fail("the page reloaded")
        # Reconnecting logged the refused connections; nothing else.
        errors = severe(driver, allowed=["ERR_CONNECTION_REFUSED", "/api/events"])
        if errors:
            fail("browser console errors after the restart: %s" % errors)

        # DNS rebinding: a foreign name for the same address is refused.
        driver.get("http://evil.test:%s/" % port)
        body = driver.find_element(By.TAG_NAME, "body").text
        if "DNS rebinding" not in body or driver.find_elements(By.ID, "services"):
            fail("a foreign Host was served: %r" % body[:200])
        say("foreign Host refused")
    finally:
        driver.quit()

say("browser test passed")
