"""Chart line colours legible on both of Streamlit's themes (``segloss.figures.colors``)."""

import pytest

from segloss.figures import colors, compare, live, plots
from segloss.train import data


def test_contrast_is_wcags():
    assert colors.contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert colors.contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)  # WCAG's well-known grey
    with pytest.raises(ValueError, match="'#rrggbb'"):
        colors.luminance("red")


def test_dark_colours_are_lifted_towards_white_just_enough_and_light_ones_kept():
    for dark in ("#31333f", "#00008e", "#222a2a", "#3e2723"):
        lifted = colors.for_both_themes(dark)
        assert 3.0 <= colors.contrast(lifted, colors.DARK_BACKGROUND) < 3.3  # the least mix that passes
        assert colors.contrast(lifted, colors.LIGHT_BACKGROUND) > 5.5
    for kept in ("#17becf", "#ef553b", "#8c564b"):
        assert colors.for_both_themes(kept) == kept


def test_every_line_colour_of_the_charts_reads_on_the_dark_background():
    """Compare's loss colours, each dataset's class colours in the live charts, the gammas and CE."""
    palettes = {"compare": compare.PALETTE, "gammas": tuple(plots.GAMMA_COLORS.values()),
                "reference": (plots.REFERENCE_COLOR,)}
    palettes.update({name: tuple(live.class_colors(name).values()) for name in data.DATASETS})
    for name, palette in palettes.items():
        for colour in palette:
            assert colors.contrast(colour, colors.DARK_BACKGROUND) >= 3.0, (name, colour)
    assert len(set(compare.PALETTE)) == len(compare.PALETTE)  # still one colour per loss
