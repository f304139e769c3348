"""Streamlit helpers for the Live training page: settings, buttons, and the live panels.

The trainer (:class:`segloss.train.trainer.Trainer`) lives in ``st.session_state[TRAINER_KEY]``,
one per browser session, and trains in its own thread; the buttons act on it through
``on_click`` callbacks (they run before the script, so the page always draws the state the
click produced). Everything drawn comes from ``trainer.snapshot()`` through :mod:`segloss.figures.live`
and :mod:`segloss.figures.plots`; nothing is computed here.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

import segloss
from segloss.losses.registry import settings_text
from segloss.train import data, export
from segloss.figures import live
from segloss.figures import render
from segloss.train import samples
from segloss.figures import plots
from segloss.train.trainer import Trainer, TrainerConfig, TrainerSnapshot, choose_device
from ui.live_session import session_keep_running
from ui.url_state import PageState
from ui.widgets import loss_param_widgets

TRAINER_KEY = "live_trainer"
PREFIX = "live"
LEARNING_RATES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
BATCH_SIZES = (2, 4, 8, 16, 32)
IMAGE_SIZES = (32, 48, 64, 96, 128)
DEFAULTS = {"dataset": "street", "loss": "focal", "lr": 3e-3, "batch": 8, "size": 64, "steps": 500, "seed": 0}
PIXELATED_CSS = "<style>.st-key-live-images img {image-rendering: pixelated;}</style>"
COLORBAR_PNG = render.png_bytes(render.colorbar_rgb(256, 10))


def _key(name: str) -> str:
    return f"{PREFIX}:{name}"


def _seed_widgets_from(config: TrainerConfig, total_steps: int | None) -> None:
    """A run in progress but no values for its widgets (the settings are kept across pages by
    :func:`ui.url_state.keep_bound_widgets`, so this is a safeguard): show the run's settings, not
    the defaults."""
    values = {"dataset": config.dataset, "loss": config.loss, "lr": config.lr, "batch": config.batch_size,
              "size": config.image_size, "seed": config.seed, "steps": total_steps or DEFAULTS["steps"]}
    for name, value in values.items():
        st.session_state.setdefault(_key(name), value)
    for name, value in config.loss_params.items():
        widget_value = list(value) if isinstance(value, tuple) else value  # a multiselect holds a list
        st.session_state.setdefault(f"{PREFIX}:{config.loss}:{name}", widget_value)


def read_settings() -> tuple[dict, int]:
    """``(Trainer keyword arguments, steps to train)`` from the widgets' session state."""
    state = st.session_state
    loss = state.get(_key("loss"), DEFAULTS["loss"])
    params = {}
    for param in segloss.LOSSES[loss].params:
        value = state.get(f"{PREFIX}:{loss}:{param.name}", param.default)
        params[param.name] = tuple(value) if param.kind == "multichoice" else value
    kwargs = {"dataset": state.get(_key("dataset"), DEFAULTS["dataset"]), "loss": loss, "loss_params": params,
              "batch_size": int(state.get(_key("batch"), DEFAULTS["batch"])),
              "image_size": int(state.get(_key("size"), DEFAULTS["size"])),
              "lr": float(state.get(_key("lr"), DEFAULTS["lr"])),
              "seed": int(state.get(_key("seed"), DEFAULTS["seed"]))}
    return kwargs, int(state.get(_key("steps"), DEFAULTS["steps"]))


def settings_widgets(trainer: Trainer | None, url: PageState | None = None) -> None:
    """Dataset, loss and its parameters (from the registry), optimiser and run length; with ``url``
    they also live in the query string (a link sets up a run, it does not start it)."""
    if trainer is not None and _key("dataset") not in st.session_state:
        _seed_widgets_from(trainer.config, trainer.snapshot().total_steps)
    kinds = {"dataset": ("choice", {"choices": tuple(data.DATASETS)}),
             "loss": ("choice", {"choices": tuple(segloss.LOSSES)}),
             "lr": ("choice", {"choices": LEARNING_RATES}), "batch": ("choice", {"choices": BATCH_SIZES}),
             "size": ("choice", {"choices": IMAGE_SIZES}), "steps": ("int", {"low": 10, "high": 50_000}),
             "seed": ("int", {"low": 0, "high": 1_000_000})}
    for name in ("lr", "batch", "size", "steps", "seed", "dataset", "loss"):
        if url is not None:
            kind, limits = kinds[name]
            url.bind(name, DEFAULTS[name], kind, key=_key(name), **limits)
        else:
            st.session_state.setdefault(_key(name), DEFAULTS[name])
    st.selectbox("Dataset", list(data.DATASETS), key=_key("dataset"), format_func=lambda n: data.DATASETS[n].title,
                 help="Procedural scenes drawn fresh every step (see the class frequencies below).")
    loss = st.selectbox("Loss", list(segloss.LOSSES), key=_key("loss"), format_func=lambda n: segloss.LOSSES[n].title)
    spec = segloss.LOSSES[loss]
    if spec.params:
        with st.expander(f"{spec.title} parameters", expanded=True):
            loss_param_widgets(spec, PREFIX, url=url, static=False)
    st.select_slider("Learning rate (Adam)", LEARNING_RATES, key=_key("lr"), format_func=lambda v: f"{v:g}")
    left, right = st.columns(2)
    left.select_slider("Batch size", BATCH_SIZES, key=_key("batch"))
    right.select_slider("Image size (px)", IMAGE_SIZES, key=_key("size"))
    left.number_input("Steps to train", min_value=10, max_value=50_000, step=100, key=_key("steps"))
    right.number_input("Seed", min_value=0, max_value=1_000_000, step=1, key=_key("seed"),
                       help="Same seed: same initial weights and the same batches in the same order.")


def wanted_config(kwargs: dict) -> TrainerConfig:
    """The config a Trainer built from these settings would have (to compare with a running one)."""
    return TrainerConfig(**kwargs, device=str(choose_device()))


def _start() -> None:
    kwargs, steps = read_settings()
    trainer = st.session_state.get(TRAINER_KEY)
    try:
        if trainer is None or trainer.config != wanted_config(kwargs) or trainer.status == "failed":
            if trainer is not None:
                trainer.close()  # stops it and its prefetching processes (GPU)
            trainer = st.session_state[TRAINER_KEY] = Trainer(**kwargs)
        if steps <= trainer.steps_done:
            st.session_state[_key("notice")] = (f"Already at step {trainer.steps_done}: raise 'Steps to train' to "
                                                "continue, or Reset to start over.")
            return
        trainer.start(total_steps=steps, keep_running=session_keep_running())
    except (ValueError, TypeError, RuntimeError) as err:
        st.session_state[_key("notice")] = f"Could not start: {err}"


def _step_once() -> None:
    """One optimisation step of the run shown (a new run in these settings when there is none, or it
    failed), then a validation, so the maps show what that single step did. Changed settings never
    discard a run here: only Start (after Stop) begins a new one with them."""
    kwargs, _ = read_settings()
    trainer = st.session_state.get(TRAINER_KEY)
    try:
        if trainer is None or trainer.status == "failed":
            if trainer is not None:
                trainer.close()
            trainer = st.session_state[TRAINER_KEY] = Trainer(**kwargs)
        elif trainer.config != wanted_config(kwargs):
            st.session_state[_key("notice")] = ("Stepped the run shown, in its own settings: the changed settings on "
                                                "the left take effect with Stop, then Start (a new run).")
        trainer.step()
        trainer.evaluate()
    except (ValueError, TypeError, RuntimeError, FloatingPointError) as err:  # a diverged step changes nothing
        st.session_state[_key("notice")] = f"Could not step: {err}"


def _reset() -> None:
    trainer = st.session_state.pop(TRAINER_KEY, None)
    if trainer is not None:
        trainer.stop()


def buttons(trainer: Trainer | None) -> None:
    """Start / Pause / Resume / Stop / Reset, enabled according to the trainer's status."""
    status = trainer.status if trainer is not None else None
    alive = trainer is not None and trainer.is_alive()
    row = st.container(horizontal=True, gap="small")  # wraps to more rows where the column is narrow
    row.button("Start", key=_key("start"), icon=":material/play_arrow:", type="primary", disabled=alive,
               on_click=_start, help="Train up to 'Steps to train'; continues the run if its settings are unchanged.")
    row.button("Stop", key=_key("stop"), icon=":material/stop:", disabled=not alive, on_click=lambda: trainer.stop())
    row.button("Pause", key=_key("pause"), icon=":material/pause:", disabled=status != "running",
               on_click=lambda: trainer.pause())
    row.button("Resume", key=_key("resume"), icon=":material/resume:", disabled=status != "paused",
               on_click=lambda: trainer.resume())
    row.button("Step", key=_key("step"), icon=":material/skip_next:", disabled=status == "running",
               on_click=_step_once, help="One optimisation step (on the next batch), then the maps are updated: "
               "follow a loss one step at a time.")
    row.button("Reset", key=_key("reset"), icon=":material/restart_alt:", disabled=trainer is None,
               on_click=_reset, help="Discard this run (model, curves); Start then begins again from step 0.")
    if trainer is not None and trainer.steps_done > 0:
        st.download_button("Download the model (.pt)", lambda: export.checkpoint_bytes(trainer),
                           file_name=f"tinyunet_{trainer.config.dataset}_{trainer.config.loss}_step{trainer.steps_done}.pt",
                           mime="application/octet-stream", key=_key("model"), icon=":material/download:",
                           width="stretch", help="The weights only (no pickled code): load them with "
                           "torch.load(f, weights_only=True). The Upload page uses this tab's model directly (prediction: "
                           "'Model from the Live training page').")
    notice = st.session_state.pop(_key("notice"), None)
    if notice:
        st.warning(notice)


def describe(config: TrainerConfig) -> str:
    """One line naming a run's settings (the loss's parameters in its formula's symbols)."""
    params = settings_text(config.loss, config.loss_params)
    return (f"**{segloss.LOSSES[config.loss].title}**{f' ({params})' if params else ''} on "
            f"**{data.DATASETS[config.dataset].title}**: batch {config.batch_size} at {config.image_size} px, "
            f"Adam lr {config.lr:g}, seed {config.seed}, on {config.device}.")


MIN_REFRESH_SECONDS, MAX_REFRESH_SECONDS = 2.0, 10.0


def refresh_seconds(snap: TrainerSnapshot, eval_every: int = 10) -> float:
    """Seconds between live-view refreshes: 2 s, or the time of one validation (``eval_every``
    steps at the current rate) when that is longer, at most 10 s. The maps and charts change only
    when the trainer validates, so refreshing faster would cost it steps for nothing."""
    per_validation = eval_every / snap.steps_per_second if snap.steps_per_second > 0 else MIN_REFRESH_SECONDS
    return float(min(MAX_REFRESH_SECONDS, max(MIN_REFRESH_SECONDS, per_validation)))


def refresh_is_off(current: float | None, snap: TrainerSnapshot) -> bool:
    """True when the rate has moved so far that the refresh schedule should be set again (a full rerun)."""
    if current is None or snap.status != "running" or snap.steps_per_second <= 0:
        return False
    wanted = refresh_seconds(snap)
    return abs(wanted - current) > 0.5 * current


METRIC_WIDTH = 140  # px: four to a row at 1400 px, two at 1024; "+0.532 since step 10" in full


def status_bar(snap: TrainerSnapshot) -> None:
    """Progress bar, step counter and the latest numbers."""
    rate = f" · {snap.steps_per_second:.1f} steps/s" if snap.status == "running" else ""
    if snap.total_steps and snap.step > snap.total_steps:  # stepped by hand past the goal
        st.progress(1.0, text=f"{snap.status.capitalize()}: step {snap.step}, past the goal of {snap.total_steps} "
                              f"(stepped by hand){rate}")
    elif snap.total_steps:
        st.progress(snap.step / snap.total_steps,
                    text=f"{snap.status.capitalize()}: step {snap.step} of {snap.total_steps}{rate}")
    else:  # stepped by hand, no run started: no goal to measure against
        st.progress(0.0, text=f"{snap.status.capitalize()}: step {snap.step}{rate}")
    if snap.status == "failed":
        st.error(f"Training failed: {snap.message}")
    elif snap.message:
        st.info(snap.message)
    evals, history = snap.evaluations, snap.history
    # four tiles a row where they fit, else two rows of two (training; validation), never 3 + 1
    row = st.container(horizontal=True, gap="small")
    training, validation = row.container(horizontal=True, gap="small"), row.container(horizontal=True, gap="small")
    step = f"{snap.step} / {snap.total_steps}" if snap.total_steps and snap.step <= snap.total_steps else f"{snap.step}"
    training.metric("Step", step, width=max(METRIC_WIDTH, 16 * len(step)))  # "12000 / 50000" in full
    training.metric("Training loss", f"{history['loss'][-1]:.4f}" if len(history["loss"]) else "–",
                    width=METRIC_WIDTH)
    for key, label in (("miou", "mIoU (validation)"), ("mean_accuracy", "Mean accuracy")):
        values = evals[key]
        validation.metric(label, f"{values[-1]:.3f}" if len(values) else "–", width=METRIC_WIDTH,
                          delta=f"{values[-1] - values[0]:+.3f} since step {evals['step'][0]}" if len(values) > 1 else None)


def _cache() -> live.ViewCache:
    """This session's cache of panels and figures: rebuilt only when the trainer has new data."""
    return st.session_state.setdefault(_key("view_cache"), live.ViewCache())


MAP_LABELS = {"loss": "loss map", "gradient": "gradient map"}


def map_kind(snap: TrainerSnapshot) -> str:
    """The "loss map / gradient map" choice (a region loss has only the gradient map)."""
    kinds = live.available_kinds(snap)
    if len(kinds) == 1:
        st.caption(f":material/info: {segloss.LOSSES[snap.config.loss].title} scores whole regions: it has no loss "
                   "per pixel, so the maps show its gradient |dL/dz|, where it pushes the network.")
        return kinds[0]
    return st.segmented_control("Per-pixel maps", kinds, format_func=MAP_LABELS.get, key=_key("kind"),
                                default="loss", help="Loss map: what each pixel costs. Gradient map: |dL/dz| at each "
                                "pixel (scaled by the number of pixels), how hard the loss pushes its logits. They "
                                "differ most on easy pixels under focal-style losses.") or "loss"


def image_panels(snap: TrainerSnapshot, kind: str) -> None:
    """The validation image, its truth and prediction, and the two per-pixel maps of ``kind``."""
    count = len(snap.val_images)
    pick, scale, log = st.columns([2, 2, 1.4])  # "log colour" whole in a 500 px view
    index = pick.slider("Validation image", 1, count, 1, key=_key("image")) - 1 if count > 1 else 0
    shared = scale.radio("Map colours", live.SCALES, horizontal=True, key=_key("scale"),
                         format_func={"own": "each to its own range", "shared": "one shared range"}.get)
    log_colour = log.toggle("log colour", key=_key("log"))
    loss_title = segloss.LOSSES[snap.config.loss].title
    panels = _cache().panels(snap, index, loss_title=loss_title, kind=kind, scale=shared, log=log_colour, min_side=1)
    is_ce = snap.config.loss == "ce"  # trained with cross-entropy: its map and the reference's are one map
    shown = panels[:4] if is_ce else panels
    with st.container(key="live-images"):
        st.html(PIXELATED_CSS)
        for column, panel in zip(st.columns(len(shown)), shown):
            column.image(panel.png, caption=f"{panel.title}: {panel.caption}", width="stretch", output_format="PNG")
    downloads = st.container(horizontal=True)  # each label in full, wrapping where the page is narrow
    for panel, name in zip(shown[3:], ("train", "ce")):
        downloads.download_button(f"{panel.title} (PNG)", panel.png, mime="image/png", key=_key(f"png_{name}"),
                                  file_name=f"{kind}_map_{name}_step{snap.step}.png", icon=":material/download:")
    view = snap.view
    what = "loss" if kind == "loss" else "gradient"
    note, bar = st.columns([3, 2])
    reference = "" if is_ce else f" and {view.map(kind, 'ce').boundary_share:.0%} of cross-entropy's"
    note.caption(f"Boundary pixels (another class among the 8 neighbours) are {view.boundary_pixel_share:.0%} of the "
                 f"validation pixels but carry {view.map(kind).boundary_share:.0%} of the {loss_title.lower()}'s "
                 f"{what}{reference}.")
    bar.image(COLORBAR_PNG, width="stretch", output_format="PNG",
              caption="log scale: dark = top of range / 10⁴, bright = top of range" if log_colour
              else "dark = 0, bright = the top of the range in each caption")


def charts(snap: TrainerSnapshot, kind: str) -> None:
    """Loss, mIoU / mean accuracy, per-class recall, each class's share of the maps of ``kind``, and
    the loss's own state."""
    figures = _cache().figures(snap, kind)
    left, right = st.columns(2)
    for column, name in zip((left, right, left, right), ("loss", "validation", "recall", "share")):
        if name in figures:
            column.plotly_chart(figures[name], width="stretch", key=_key(f"{name}_fig"))
    if "state" in figures:
        st.plotly_chart(figures["state"], width="stretch", key=_key("state_fig"))
    # data as a callable: the CSV is built only when someone clicks, not on every refresh
    st.download_button("Validation metrics over time (CSV)", lambda: plots.table_csv(live.evaluation_table(snap)),
                       file_name=f"live_{snap.config.dataset}_{snap.config.loss}.csv", mime="text/csv",
                       key=_key("csv"))


def frequency_table(dataset: str) -> None:
    """The dataset's class-frequency table (colour swatches, shares, the weights weighted CE uses)."""
    table = samples.frequency_table(dataset)
    swatches = [f"background-color: {c}; color: {c}" for c in table["colour"]]  # the cell shows the colour
    st.dataframe(pd.DataFrame(table).style.apply(lambda _: swatches, subset=["colour"])
                 .format({"pixel share": "{:.2%}", "1 in N pixels": "{:,.0f}", "vs. largest": "{:.1f}x",
                          "median-frequency weight": "{:.2f}", "inverse-frequency weight": "{:.3f}"}),
                 hide_index=True, width="stretch")
    st.download_button("Class frequencies (CSV)", plots.table_csv(table), file_name=f"{dataset}_class_frequencies.csv",
                       mime="text/csv", key=_key("freq_csv"))
