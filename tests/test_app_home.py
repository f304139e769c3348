"""The home page (AppTest): renders every registry loss with its formula, no exception."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

import segloss


def test_home_page_lists_every_loss_with_its_formula():
    app = AppTest.from_file(str(Path(__file__).parents[1] / "app.py"), default_timeout=60).run()
    assert not app.exception
    formulas = [element.value.strip("$\n") for element in app.latex]
    for spec in segloss.LOSSES.values():
        assert spec.formula in formulas
        assert any(spec.title in md.value for md in app.markdown)
