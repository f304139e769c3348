"""Every widget that shapes a page's view, mirrored in the page's query string.

A page declares its widgets' keys with :meth:`PageState.bind` before drawing them (and draws them
without a default argument: the value lives in ``st.session_state``). The first time a widget
appears in a browser session its value comes from the URL when the URL holds a valid one, else
from its default; from then on the widget leads and :meth:`PageState.publish` writes every
non-default value back under a short name, so the address bar always holds a link to the view.
Values that do not parse or lie outside the widget's range are ignored with a short notice; a
URL is never evaluated, only matched against the widget's own choices and bounds.

    url = PageState("curves")
    st.slider("Number of classes C", 2, 50, key=url.bind("C", 19, "int", low=2, high=50))
    ...
    url.publish()          # after the last bound widget
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

import streamlit as st

MAX_RAW = 200  # characters of one query value looked at; longer ones are ignored
KINDS = ("int", "float", "bool", "choice", "multi")
READ_KEY = "url_state:read"  # session state: the (page, query name) pairs whose link value was read
BOUND_KEY = "url_state:bound"  # session state: every bound widget's key, kept across pages (keep_bound_widgets)


@dataclass(frozen=True)
class Field:
    """One bound widget: its session-state key, query name, default and what values it takes."""

    key: str
    short: str
    default: object
    kind: str
    choices: tuple = ()
    low: float | None = None
    high: float | None = None

    def parse(self, raw: str):
        """The widget value a query value stands for; ``ValueError`` if it stands for none."""
        if len(raw) > MAX_RAW:
            raise ValueError("too long")
        if self.kind == "bool":
            if raw not in ("1", "0", "true", "false"):
                raise ValueError("not 1 or 0")
            return raw in ("1", "true")
        if self.kind in ("int", "float"):
            number = float(raw)
            if not math.isfinite(number) or (self.kind == "int" and number != int(number)):
                raise ValueError("not a number of the right kind")
            if (self.low is not None and number < self.low) or (self.high is not None and number > self.high):
                raise ValueError(f"outside [{self.low:g}, {self.high:g}]")
            return int(number) if self.kind == "int" else number
        if self.kind == "choice":
            return self._choice(raw)
        # each value once: a repeated one ("losses=focal,focal") gave two widgets one key, a crash
        return list(dict.fromkeys(self._choice(part) for part in raw.split(",") if part)) if raw else []

    def _choice(self, raw: str):
        for choice in self.choices:
            if str(choice) == raw or (isinstance(choice, float) and _same_number(raw, choice)):
                return choice
        raise ValueError("not one of the choices")

    def dump(self, value) -> str:
        if self.kind == "bool":
            return "1" if value else "0"
        if self.kind == "multi":
            return ",".join(_text(v) for v in value)
        return _text(value)


def _text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _same_number(raw: str, number: float) -> bool:
    try:
        return math.isclose(float(raw), number, rel_tol=1e-9, abs_tol=1e-12)
    except ValueError:
        return False


def keep_bound_widgets() -> None:
    """Keep every bound widget's value while its page is not shown: call first on every page.

    Streamlit forgets a widget's value at the end of a run that did not draw it, so a visit to
    another page reset a page's settings to their defaults (the Live training page's unsaved loss
    choice was silently replaced by the running one's). A value re-assigned through
    ``st.session_state`` before any widget is drawn is the session's, not the widget's, and stays.
    """
    for key in st.session_state.get(BOUND_KEY, ()):
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def kept(key: str, default) -> str:
    """A widget's key, its value kept across pages as a bound widget's is but not in the link (the
    widget is drawn without a default argument: its first value is ``default``)."""
    st.session_state.setdefault(BOUND_KEY, set()).add(key)
    st.session_state.setdefault(key, default)
    return key


class PageState:
    """The bound widgets of one page (``page`` prefixes their session-state keys)."""

    def __init__(self, page: str) -> None:
        self.page = page
        self.fields: list[Field] = []
        self.ignored: list[str] = []
        self._notice = st.empty()  # where the page starts: a notice at the foot went unseen under long pages

    def bind(self, short: str, default, kind: str, *, choices: Sequence = (), low: float | None = None,
             high: float | None = None, key: str | None = None) -> str:
        """Register a widget and give it its first value (the URL's, if valid); returns its key."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        field = Field(key or f"{self.page}:{short}", short, default, kind, tuple(choices), low, high)
        self.fields.append(field)
        # the link is read once per query name and session: a field bound later under a new key (the
        # Gradients page's slices, one key per loss and parameter) would otherwise take the query value
        # the page itself wrote for the previous loss (a notice, or gamma's slices offered for alpha)
        read = st.session_state.setdefault(READ_KEY, set())
        st.session_state.setdefault(BOUND_KEY, set()).add(field.key)
        if field.key not in st.session_state:
            raw = None if (self.page, short) in read else st.query_params.get(short)
            read.add((self.page, short))
            value = default
            if raw is not None:
                try:
                    value = field.parse(raw)
                except ValueError as err:
                    self.ignored.append(f"{short}={raw[:40]!r} ({err})")
            st.session_state[field.key] = list(value) if kind == "multi" else value
        return field.key

    def values(self) -> dict[str, str]:
        """Query values of every bound widget whose value differs from its default."""
        out = {}
        for field in self.fields:
            value = st.session_state.get(field.key, field.default)
            same = list(value) == list(field.default) if field.kind == "multi" else value == field.default
            if not same:
                out[field.short] = field.dump(value)
        return out

    def publish(self) -> None:
        """Write the view into the query string (only when it changed) and say what was ignored, near
        the top of the page (where the page made this state)."""
        wanted = self.values()
        if st.query_params.to_dict() != wanted:
            st.query_params.from_dict(wanted)
        if self.ignored:  # in the slot kept near the top of the page (see __init__)
            self._notice.caption(":material/link_off: Ignored in the link: " + "; ".join(self.ignored) + ".")

    def link(self) -> str:
        """A link to this view: the page's address with its query string."""
        base = (st.context.url or "").split("?")[0]
        query = urlencode(self.values())
        return f"{base}?{query}" if query else base

    def link_control(self, note: str = "Opening it in any browser shows these settings and charts.") -> None:
        """"Copy link to this view": the link in a code box (Streamlit's copy button on its right) and
        ``note``, what opening it shows (a page whose view holds more than settings says what stays behind)."""
        with st.expander("Copy link to this view", icon=":material/link:"):
            st.code(self.link() or "(this page, with its defaults)", language=None, wrap_lines=True)
            st.caption(note)


@dataclass(frozen=True)
class Preset:
    """A one-click lesson: widget values to set, and what to look at."""

    title: str
    values: dict
    lesson: str


def preset_buttons(url: PageState, presets: Sequence[Preset], on_apply: Callable[[], None] | None = None) -> None:
    """A row of buttons, one per preset; a click sets its widgets (its callback runs before they are
    drawn, with the fields this page bound on its previous run) and shows its lesson until one of
    those widgets is changed."""
    lesson_key = f"{url.page}:lesson"

    def apply(preset: Preset) -> None:
        keys = {f.short: f.key for f in url.fields}  # the fields this page bound on its last run
        chosen = {keys.get(short, f"{url.page}:{short.replace('.', ':')}"): value for short, value in preset.values.items()}
        st.session_state.update(chosen)
        st.session_state[lesson_key] = (preset.title, chosen)
        if on_apply is not None:
            on_apply()

    row = st.container(horizontal=True, vertical_alignment="center")  # wraps where the page is narrow
    row.caption("Lessons: one click sets the page up.", width="content")
    for preset in presets:
        row.button(preset.title, key=f"{url.page}:preset:{preset.title}", on_click=apply, args=(preset,),
                   icon=":material/school:", help=preset.lesson)
    title, settings = st.session_state.get(lesson_key) or (None, {})
    if any(st.session_state.get(key) != value for key, value in settings.items()):
        title = st.session_state[lesson_key] = None  # the user changed what the lesson talks about
    chosen = next((p for p in presets if p.title == title), None)
    if chosen is not None:
        st.info(f"**{chosen.title}.** {chosen.lesson}", icon=":material/school:")
