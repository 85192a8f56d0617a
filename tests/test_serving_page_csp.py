"""The page under the server's Content-Security-Policy (issue 20): in a real Chromium (as
tests/test_page.py), drawing, a photo, a dropped photo and the camera all work and the browser
reports no policy violation; a page on another origin cannot run inference through it."""

from __future__ import annotations

import functools
import http.server
import threading

import test_page
from test_page import (
    PHOTOS,
    address,
    close_tab,
    draw,
    drop_file,
    open_tab,
    settled_answer,
    skeleton_strokes,
)

# test_page's fixtures: its server on the tests' model, Chromium with a fake camera, MNIST digits
server, browser, camera_video, digits = (test_page.server, test_page.browser,
                                         test_page.camera_video, test_page.digits)

WATCH_VIOLATIONS = """
    window.__violations = [];
    document.addEventListener("securitypolicyviolation",
        (event) => window.__violations.push(`${event.violatedDirective} ${event.blockedURI}`));
"""


def test_the_page_works_under_its_content_security_policy(browser, server, digits):
    tab = open_tab(browser, server)
    try:
        tab.add_init_script(WATCH_VIOLATIONS)
        messages = []
        tab.on("console", lambda message: messages.append(message.text))
        tab.reload()
        tab.wait_for_function(
        "() => document.getElementById('server-status').dataset.ready === 'true'")
        draw(tab, skeleton_strokes(digits[3][0]))
        drawn = settled_answer(tab)
        assert drawn["state"] == "done" and drawn["prediction"] != "", drawn
        tab.evaluate("document.getElementById('tab-photo').click()")
        photo = sorted((PHOTOS / "2").glob("*.jpg"))[0]
        tab.set_input_files("[data-testid=file]", str(photo))
        assert settled_answer(tab)["state"] == "done"
        drop_file(tab, sorted((PHOTOS / "1").glob("*.jpg"))[0], "image/jpeg")
        assert settled_answer(tab)["state"] == "done"
        tab.click("#tab-camera")
        tab.click("[data-testid=camera-toggle]")
        tab.wait_for_function(
            "() => !isNaN(parseFloat(document.getElementById('fps').textContent))",
            timeout=30_000)
        tab.click("[data-testid=camera-toggle]")
        assert tab.evaluate("window.__violations") == []
        assert not [text for text in messages if "Content Security Policy" in text], messages
        assert "default-src 'self'" in tab.evaluate(
            "fetch('/').then((r) => r.headers.get('content-security-policy'))")
    finally:
        close_tab(tab, server)


def test_another_origin_cannot_unload_the_model_through_the_browser(browser, server, tmp_path):
    """What the issue reproduced: a page on another origin sends POST .../unload as a form would
    (no-cors: the browser sends it, the page cannot read the answer). The other page is served
    from another loopback port (Chromium lets a loopback page reach 127.0.0.1; a public site
    would also need DNS rebinding, refused by the Host check). The server refuses it: the model
    stays."""
    (tmp_path / "elsewhere.html").write_text("<!doctype html><title>elsewhere</title>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    elsewhere = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=elsewhere.serve_forever, daemon=True).start()
    context = browser.new_context()
    try:
        tab = context.new_page()
        tab.goto(f"http://127.0.0.1:{elsewhere.server_address[1]}/elsewhere.html")
        sent = tab.evaluate(
            """(url) => fetch(url + "/v2/repository/models/digits/unload",
                              {method: "POST", mode: "no-cors", body: "x"})
                .then(() => "sent", (error) => String(error))""", address(server))
        assert sent == "sent"
    finally:
        context.close()
        elsewhere.shutdown()
        elsewhere.server_close()
    assert server.request("GET", "/v2/models/digits/ready")[0] == 200
    assert server.request("GET", "/v2/health/ready") == (200, {"ready": True})
