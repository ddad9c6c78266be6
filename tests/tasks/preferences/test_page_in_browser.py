"""An annotator's session in a real browser (Chromium driven by Playwright) against the
real page in its own process: the invite link, hostile model text shown as text, the
keyboard shortcuts, a comment typed with digits in it, and the votes in the database.

The browser (the `browser` fixture in tests/conftest.py) resolves no name but 127.0.0.1
and makes no background requests, so nothing leaves the machine even if a page asked it
to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from benchmarks.comparison_page_clients import running_page
from tasks.preferences.store import Vote, open_database

from .conftest import ADMIN_TOKEN, make_comparisons

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Dialog

WAIT_MS = 5_000  # for a page to load after a key press; a generous bound, not a timing check


def test_an_annotator_votes_with_the_keyboard_in_a_real_browser(browser: Browser, tmp_path):
    from playwright.sync_api import expect

    url = f"sqlite:///{(tmp_path / 'preferences.db').as_posix()}"
    # Four plain items, one per shortcut; every item pairs a clean text with one that
    # carries `<script>document.title="pwned"</script>` (see HOSTILE in conftest).
    comparisons = make_comparisons(url, prompts=4, repeat_fraction=0, gold_fraction=0)

    with running_page(url, tmp_path / "page", ADMIN_TOKEN) as base:
        page = browser.new_page()
        dialogs: list[str] = []  # an alert() or the like would mean a script of the text ran

        def note_dialog(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", note_dialog)
        page.goto(f"{base}/join/{comparisons.tokens['ana']}")
        expect(page).to_have_url(f"{base}/judge")  # the token left the address bar
        progress = page.locator("#progress-text")
        expect(progress).to_have_text("0 of 4 judged")
        expect(page.locator("#prompt")).to_contain_text("Prompt")

        # The hostile sample is on screen as its literal characters: no element, no script.
        pair = page.locator("#left, #right")
        assert pair.filter(has_text='<script>document.title="pwned"</script>').count() == 1
        assert pair.filter(has_text="a fine and complete answer").count() == 1
        assert page.locator("#left script, #right script, #left b, #right b").count() == 0
        assert page.title() == "Which continuation is better? (0/4)"
        assert page.evaluate("document.title") != "pwned"

        shown: list[str] = []  # the item id of each screen, in order

        def press(key: str, now_done: int) -> None:
            shown.append(page.locator('#vote input[name="item_id"]').get_attribute("value"))
            page.keyboard.press(key)
            expect(progress).to_contain_text(f"{now_done} of 4 judged", timeout=WAIT_MS)

        press("1", 1)  # left

        # Typing into the comment box is text, never a vote, even keys that are shortcuts.
        comment = page.locator("#comment")
        comment.click()
        page.keyboard.type("1 is better, 2 is long")
        expect(comment).to_have_value("1 is better, 2 is long")
        expect(progress).to_have_text("1 of 4 judged")
        comment.blur()  # back on the page, the shortcuts work again
        press("T", 2)  # tie, sent with the comment

        press("ArrowRight", 3)  # right
        press("4", 4)  # both bad: the last item, so the "all done" page
        expect(page.locator("h1")).to_have_text("All done, thank you!")
        assert dialogs == [] and "pwned" not in page.title()

    engine = open_database(url)
    with Session(engine) as session:
        votes = session.scalars(select(Vote).order_by(Vote.id)).all()
        stored = [(str(v.item_id), v.choice, v.comment) for v in votes]
    engine.dispose()
    assert stored == [
        (shown[0], "left", ""),
        (shown[1], "tie", "1 is better, 2 is long"),
        (shown[2], "right", ""),
        (shown[3], "both_bad", ""),
    ]
