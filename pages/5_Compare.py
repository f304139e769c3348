"""Compare losses: the same tiny model trained under several losses, per-class results over seeds.

Shows the committed result set at once (produced by `python -m segloss compare`, see README)
and can run a smaller comparison live.
"""

import streamlit as st

import segloss
from segloss.train import compare
from segloss.figures import compare as compare_figures
from segloss.train import data
from ui.layout import ROOT, page_setup
from ui.url_state import PageState, kept

page_setup("Compare losses", ":material/leaderboard:")
COMMITTED = ROOT / "sample_data" / "compare_street" / "summary.json"


@st.cache_data(show_spinner=False)
def committed_summary(path: str, mtime: float) -> dict:
    return compare.load_summary(path)


def show(summary: dict, key: str, url: PageState | None = None) -> None:
    """Charts and tables of one comparison summary (its metric choice in the link when ``url`` is given)."""
    cfg = summary.get("config", {})
    seeds = len(next(iter(summary["losses"].values()))["seeds"])
    dataset = data.DATASETS[summary["dataset"]].title if summary["dataset"] in data.DATASETS else summary["dataset"]
    spread = ("Error bars and ±: standard deviation over seeds." if seeds > 1 else
              "One seed: no spread to show; run several seeds to see how much of a gap is noise.")
    st.caption(f"Dataset **{dataset}**, {cfg.get('steps', '?')} steps of batch {cfg.get('batch_size', '?')} "
               f"at {cfg.get('image_size', '?')} px, lr {cfg.get('lr', '?')}; seeds per loss: {seeds}; metrics on "
               f"a held-out batch of {cfg.get('val_size', '?')} images, whose pixel shares label the classes (the "
               f"Live training page's table counts 64 other samples, so its shares differ a little). {spread}")
    labels = list(summary["losses"])
    colors = compare_figures.loss_colors(summary)  # from the whole set: a loss keeps its colour in any subset
    symbols = compare_figures.loss_symbols(summary)  # and its marker
    left, right = st.columns([1, 2])
    metric_key = kept(f"{key}:metric", "iou") if url is None else url.bind(
        "metric", "iou", "choice", choices=tuple(compare_figures.METRIC_TITLES), key=f"{key}:metric")
    metric = left.radio("Per-class metric", list(compare_figures.METRIC_TITLES), horizontal=True, key=metric_key,
                        format_func=compare_figures.METRIC_TITLES.get)
    shown_key = kept(f"{key}:shown", labels) if url is None else url.bind("shown", labels, "multi", choices=labels,
                                                                        key=f"{key}:shown")
    if url is None and not set(st.session_state.get(shown_key, [None])) <= set(labels):
        st.session_state[shown_key] = labels  # a new live comparison: show all of its losses
    shown = right.multiselect("Losses shown", labels, key=shown_key,
                              format_func=lambda k: compare_figures.loss_title(k, summary["losses"][k]), wrap=True)
    if not shown:
        st.info("Pick at least one loss to show.")
        return
    summary = compare_figures.only(summary, shown)
    st.plotly_chart(compare_figures.per_class_figure(summary, metric, colors=colors), width="stretch",
                    key=f"{key}:bars")
    # the page's whole width: beside a note, a narrow window left the plot and its legend too little room
    st.plotly_chart(compare_figures.tradeoff_figure(summary, colors=colors, symbols=symbols), width="stretch", key=f"{key}:tradeoff")
    st.caption("Up and to the right is better. The recall-loss paper trades a little mIoU for mean accuracy "
               "(recall on rare classes); see whether that happens here.")
    overall, per_class = compare.summary_tables(summary)

    def cell(entry: dict, k: str) -> str:
        return f"{entry[k]:.3f} ± {entry[k + '_std']:.3f}" if seeds > 1 else f"{entry[k]:.3f}"

    suffix = " (mean ± std)" if seeds > 1 else ""
    st.dataframe([{"loss": compare_figures.loss_title(label, e),
                   **{f"{title}{suffix}": cell(e, k) for k, title in compare_figures.SUMMARY_TITLES.items()}}
                  for label, e in summary["losses"].items()], hide_index=True, width="stretch",
                 height=36 * (len(summary["losses"]) + 1) + 3)  # every loss in view, no inner scrolling
    one, two = st.columns(2)
    one.download_button("Summary (CSV)", overall, file_name="summary.csv", mime="text/csv", key=f"{key}:csv1")
    two.download_button("Per class (CSV)", per_class, file_name="per_class.csv", mime="text/csv", key=f"{key}:csv2")


st.title("Compare losses on imbalanced data")
st.markdown(
    "Every loss trains the same tiny U-Net from the same initial weights on the same batches (per seed) and is "
    "scored on the same held-out images. Classes are ordered from the rarest: that is where class-imbalance losses "
    "should earn their keep. A result is a finding, not a target: if a paper's direction does not show here, the "
    "data, model or budget differ from the paper's."
)

url = PageState("compare")
TABS = ("Committed results", "Run a small comparison")
committed, live = st.tabs(TABS, key=url.bind("tab", TABS[0], "choice", choices=TABS), on_change="rerun")  # in the link
with committed:
    if COMMITTED.exists():
        try:
            summary = committed_summary(str(COMMITTED), COMMITTED.stat().st_mtime)
        except ValueError as err:
            st.error(f"The committed comparison cannot be shown: {err}", icon=":material/error:")
        else:
            show(summary, "committed", url)
    else:
        st.info("No committed result set yet: run `python -m segloss compare --out sample_data/compare_street`.")

with live:
    with st.form("live-compare"):
        # kept across pages, as every setting is (ui.url_state.kept), though not in the link
        dataset = st.selectbox("Dataset", list(data.DATASETS), format_func=lambda k: data.DATASETS[k].title,
                               key=kept("live-compare:dataset", "street"))
        losses = st.multiselect("Losses (registry defaults)", list(segloss.LOSSES), key=kept("live-compare:losses",
                                ["ce", "recall"]), format_func=lambda n: segloss.LOSSES[n].title, wrap=True)
        steps = st.slider("Steps per run", 10, 300, step=10, key=kept("live-compare:steps", 60))
        seeds = st.slider("Seeds", 1, 3, key=kept("live-compare:seeds", 1))
        run = st.form_submit_button("Run comparison", type="primary")
    if run and not losses:
        st.error("Pick at least one loss to compare.")
    elif run:
        bar = st.progress(0.0, text="Starting...")
        summary = compare.run_comparison(losses, dataset=dataset, steps=steps, seeds=seeds, val_size=16,
                                         progress=lambda done, total, msg: bar.progress(done / total, text=msg))
        bar.progress(1.0, text="Done")
        st.session_state["live_comparison"] = summary
        st.session_state.pop("live:shown", None)  # a new comparison: show all of its losses
    if "live_comparison" in st.session_state:
        show(st.session_state["live_comparison"], "live")
    elif not run:  # e.g. opened from a link, which carries settings but no results
        st.caption("No comparison run in this session yet: choose losses and press **Run comparison** (at the "
                   "defaults 5-10 s a run on a 2-core CPU). Results stay in this browser session; links do not "
                   "carry them.")

url.publish()
url.link_control("Opening it shows these settings and the shipped results; a comparison run on this page "
                 "is not in the link.")
