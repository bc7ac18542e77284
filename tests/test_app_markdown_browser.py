"""What Streamlit really renders from an escaped value, in a real headless Chromium.

Streamlit's markdown is CommonMark plus its own syntax (``:red[...]``, ``:material/icon:``,
emoji short codes, ``$...$`` LaTeX) and GFM autolinks, which act on the text after escapes are
resolved. A small Streamlit script puts hostile values through the app's escaping helper into
every kind of place the app writes values to; the browser must show each value as typed (the
invisible word joiner aside) with no link, image, formula, colour, badge, icon or emphasis.
Needs: ``apt-get install -y chromium``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from test_app_fixtures import free_port, serving

pytestmark = pytest.mark.browser

HOSTILE = {
    "link": "pos ![](http://evil.example/x.png) [re-login](http://evil.example/phish)",
    "streamlit": ":red[alarm] :material/home: :smile: :blue-badge[b] :streamlit:",
    "latex": "$x^2$ and $$y$$ \\(z\\)",
    "autolink": "www.evil.example a@evil.example https://evil.example/a",
    "commonmark": "**b** _i_ ~~s~~ `c` <b>h</b> # h\n- item [a]: /x",
    "other": "==mark== ++ins++ ^sup^ ~sub~ ||spoiler|| <!-- c --> &amp; &#35; a|b",
    # block syntax counts where a value begins (it often begins a caption or a message)
    "ordered": "1. one 2) two",
    "heading": "# h",
    "bullet": "- item",
    "quote": "> q",
    "indented": "    code",
    "rule": "---",
}
PLAIN = "plain"  # the markup a place has of its own (a link button's link, a heading's anchor)
# one element per kind of place the app writes values into (the script below)
PLACES = ("markdown", "caption", "subheader", "error", "warning", "info", "success", "metric", "button",
          "selectbox", "expander", "image", "link_button", "tabs")
# places that show text as it is: the value goes in unescaped
PLAIN_PLACES = ("option", "multiselect")
# what markup looks like in the page: none of it may come from a value
MARKUP = ("a, img:not([src*='/media/']), .katex, .stMarkdownColoredText, .stMarkdownBadge, "
          "[data-testid=stIconMaterial], [data-testid=stIconEmoji], strong, em, del, code, ul, li, h1, h2")

SCRIPT = '''
import json, os
import numpy as np
import streamlit as st
from lrp_captum.viewer.escaping import {helper} as shown

for name, value in json.loads(os.environ["VALUES"]).items():
    v = shown(value)
    for place in {places!r}:
        box = st.container(key=f"{{place}}-{{name}}")
        if place == "option":
            box.selectbox("pick", [value], key=f"o-{{name}}")
        elif place == "multiselect":
            box.multiselect("pick", [value], default=[value], key=f"m-{{name}}")
        elif place == "metric":
            box.metric(v, v)
        elif place == "button":
            box.button(v, key=f"b-{{name}}")
        elif place == "selectbox":
            box.selectbox(v, ["x"], key=f"s-{{name}}")
        elif place == "expander":
            box.expander(v)
        elif place == "image":
            box.image(np.full((4, 4), 0.5), caption=v)
        elif place == "subheader":
            box.subheader(v, anchor=False)
        elif place == "link_button":
            box.link_button(v, "https://127.0.0.1/")
        elif place == "tabs":
            box.tabs([v])
        else:
            getattr(box, place)(v)
'''


def rendered(helper: str, tmp_path, browser) -> dict:
    """``{(place, name): (text shown, markup found)}`` and the URLs of the page's requests to evil.example."""
    script = tmp_path / "places.py"
    script.write_text(SCRIPT.format(helper=helper, places=PLACES + PLAIN_PLACES))
    port = free_port()
    env = dict(os.environ, VALUES=json.dumps({**HOSTILE, PLAIN: PLAIN}))
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port), "--server.address",
           "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    with serving(cmd, port, env, tmp_path / "streamlit.log"):
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        asked = []
        page.on("request", lambda r: asked.append(r.url))
        page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)
        page.wait_for_selector(f".st-key-tabs-{PLAIN}", timeout=60_000)
        page.wait_for_timeout(1500)
        found = {}
        for name in [*HOSTILE, PLAIN]:
            for place in PLACES + PLAIN_PLACES:
                box = page.locator(f".st-key-{place}-{name}")
                tags = box.evaluate("(e, sel) => [...e.querySelectorAll(sel)].map(x => x.tagName + ' '"
                                    " + (x.dataset.testid || ''))", MARKUP)
                # a select box shows its choice as the value of an input
                text = box.evaluate("e => e.innerText + ' ' + [...e.querySelectorAll('input')].map(i => i.value).join(' ')")
                found[place, name] = (text.replace("\u2060", ""), tags)
        page.close()
    return found, [u for u in asked if "evil.example" in u]


@pytest.fixture(scope="module")
def shown(tmp_path_factory, browser):
    return rendered("streamlit_literal", tmp_path_factory.mktemp("places"), browser)


@pytest.mark.parametrize("name", list(HOSTILE))
@pytest.mark.parametrize("place", PLACES + PLAIN_PLACES)
def test_an_escaped_value_is_shown_as_typed_with_no_markup(shown, place, name):
    found, _ = shown
    text, markup = found[place, name]
    assert markup == found[place, PLAIN][1]
    assert "".join(HOSTILE[name].split()) in "".join(text.split())  # as typed (an input drops line breaks)


def test_no_escaped_value_makes_the_browser_ask_another_host(shown):
    assert shown[1] == []
