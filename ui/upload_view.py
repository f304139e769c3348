"""Streamlit helpers for the Upload page: the inputs (image, mask, prediction) and their errors.

Every problem with an upload is turned into an ``st.error`` that says what to fix, and the
helper returns None so the page simply draws less; nothing raises into Streamlit. Heavy work is
cached with ``st.cache_resource`` under a key that includes a hash of the uploaded bytes, so
a rerun caused by a slider never decodes or simulates again. Outputs live in
:mod:`ui.upload_results`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import streamlit as st
import torch

from segloss.train import checkpoints
from segloss.train import data
from segloss.train import fitting
from segloss.uploads import simulate
from segloss.uploads.scene import (FROM_MASK, OFFER_IGNORE, OFFER_RESIZE, SAMPLE_DIR, Scene, SceneProblem,
                           sample_scene, scene_from_uploads)
from segloss.uploads.loaders import (IMAGE_FORMATS, MAX_UPLOAD_BYTES, UploadError, check_header,
                                     load_logits)

from ui.url_state import PageState, kept

IMAGE_TYPES = sorted({f.lower() for f in IMAGE_FORMATS} | {"jpg", "tif"})
# the mask's uploader takes every image type: a JPEG (or WebP, GIF) mask then gets the decoder's message, why a
# mask must be lossless and what to do, not the uploader's bare red mark for a refused extension
MASK_TYPES = IMAGE_TYPES
CLASS_CHOICES = (*data.DATASETS, FROM_MASK)
SOURCES = {"simulate": "Simulated from the mask", "logits": "Your logits or probabilities (.npy/.npz)",
           "fit": "Tiny U-Net fitted to this image (a few seconds)",
           "checkpoint": "Shipped checkpoint (tiny U-Net)", "live": "Model from the Live training page"}
LIVE_KEY = "live_trainer"
UPLOAD_MB = MAX_UPLOAD_BYTES // 2**20  # the loaders' limit, so the widget refuses larger files up front
#: Widgets drawn only while there is a scene or a result: their values are carried over runs in
#: which they are not drawn (after a bad upload), instead of Streamlit resetting them.
KEPT = {"sim_confidence": 0.85, "sim_width": 4.0, "sim_noise": 0.5, "sim_scale": 4.0, "sim_missed": -1,
        "sim_to": -1, "sim_seed": 0, "upload_opacity": 0.65, "upload_scale": "shared", "upload_log": False,
        "compare_mode": "difference", "compare_a": None, "compare_b": None}


@dataclass
class Prediction:
    """Logits ``(C, H, W)`` of the chosen source, a cache ``key`` for them and a ``label`` for titles."""

    logits: torch.Tensor
    key: str
    label: str


def as_plain_text(name: str) -> str:
    """A user's file name for ``st.markdown``: every punctuation mark escaped, so that ``*``, ``[..](..)``,
    ``$`` or ``:red[..]`` in a name show as typed instead of formatting the message."""
    return re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", name)


def digest(*parts: bytes | str) -> str:
    """A short content hash, used in cache keys (the same bytes give the same key)."""
    h = hashlib.sha1()
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


@st.cache_data(max_entries=8, show_spinner="Checking the upload...")
def _uploaded_scene(image: bytes, mask: bytes, classes: str, resize: bool, ignore: bool, name: str):
    return scene_from_uploads(image, mask, classes, resize_mask=resize, out_of_range_as_ignore=ignore, name=name)


@st.cache_data(max_entries=8, show_spinner=False)
def _sample(dataset: str, index: int) -> Scene:
    return sample_scene(dataset, index, SAMPLE_DIR)


URL_FIELDS = {  # kept widget -> (name in the link, kind, limits)
    "sim_confidence": ("confidence", "float", {"low": 0.05, "high": 0.99}),
    "sim_width": ("softness", "float", {"low": 0.0, "high": 32.0}),
    "sim_noise": ("noise", "float", {"low": 0.0, "high": 4.0}),
    "sim_scale": ("blob", "float", {"low": 0.0, "high": 32.0}),
    "sim_missed": ("missed", "int", {"low": -1, "high": 1023}),
    "sim_to": ("to", "int", {"low": -1, "high": 1023}),
    "sim_seed": ("sim_seed", "int", {"low": 0, "high": 2**31 - 1}),
    "upload_opacity": ("opacity", "float", {"low": 0.0, "high": 1.0}),
    "upload_scale": ("colours", "choice", {"choices": ("shared", "per loss")}),
    "upload_log": ("log", "bool", {}),
}
SAMPLE_LINK = "upload_sample_link"  # the sample shown, as the link names it (-1: none)
KEPT_UPLOAD = "upload_kept_files"  # the last uploaded pair: (image bytes, mask bytes, their names); the boxes empty on a page change


def keep_widget_state(url: PageState | None = None) -> None:
    """Call first: the page's widgets keep their values while they are not drawn, on any page
    (:func:`ui.url_state.kept`, re-asserted by every page's ``page_setup``).

    The widgets concerned take their defaults from here (not a ``value=`` argument), which is
    what Streamlit asks for when a key is also set through ``st.session_state``. With ``url``
    they (and the class choice, and which sample is shown) also live in the link; an uploaded
    file cannot, so a link to an upload opens with the same settings and asks for the files.
    """
    for key, default in KEPT.items():
        if url is not None and key in URL_FIELDS:
            short, kind, limits = URL_FIELDS[key]
            url.bind(short, default, kind, key=key, **limits)
        else:
            kept(key, default)
    if url is not None:
        url.bind("classes", CLASS_CHOICES[0], "choice", choices=CLASS_CHOICES, key="upload_classes")
        url.bind("sample", -1, "int", low=-1, high=1_000_000, key=SAMPLE_LINK)
        if "upload_mode" not in st.session_state and st.session_state[SAMPLE_LINK] >= 0:
            st.session_state["upload_mode"] = "sample"  # a link to a sample opens on it
            st.session_state["sample_index"] = st.session_state[SAMPLE_LINK]


def _set_mode(mode: str) -> None:
    st.session_state["upload_mode"] = mode
    if mode == "sample":
        st.session_state["sample_index"] = st.session_state.get("sample_index", -1) + 1
        if st.session_state.get("upload_classes") == FROM_MASK:
            st.session_state["upload_classes"] = "street"


def _files_changed() -> None:
    """A file added to or removed from a box by hand: the uploaded files lead, the kept pair gives way."""
    _set_mode("upload")
    st.session_state.pop(KEPT_UPLOAD, None)


def scene_input() -> tuple[Scene, str] | None:
    """Class choice, image and mask uploaders, "Try a sample"; the scene and its cache key, or None."""
    classes = st.selectbox("Classes", CLASS_CHOICES, key="upload_classes",
                           format_func=lambda k: "Inferred from the mask" if k == FROM_MASK
                           else f"{data.DATASETS[k].title} ({data.DATASETS[k].num_classes} classes)",
                           help="Class names and the palette of colour masks. 'Inferred': index masks give "
                           "C = largest label + 1; colour masks one class per colour.")
    image_file = st.file_uploader("Image", type=IMAGE_TYPES, key="upload_image", on_change=_files_changed,
                                  max_upload_size=UPLOAD_MB)
    mask_file = st.file_uploader("Mask (lossless PNG/TIFF/BMP: class indices or palette colours)", type=MASK_TYPES,
                                 key="upload_mask", on_change=_files_changed, max_upload_size=UPLOAD_MB)
    st.button("Try a sample", icon=":material/science:", on_click=_set_mode, args=("sample",),
              help="Loads an image and mask of the chosen dataset (again: the next sample).")
    in_sample = st.session_state.get("upload_mode") == "sample"
    st.session_state[SAMPLE_LINK] = st.session_state.get("sample_index", 0) if in_sample else -1
    if in_sample:
        dataset = classes if classes != FROM_MASK else "street"
        index = st.session_state.get("sample_index", 0)
        scene = _sample(dataset, index)
        st.caption(f"Sample **{scene.name}** ({data.DATASETS[dataset].title}); upload your own files to replace it.")
        if image_file is not None and mask_file is not None or KEPT_UPLOAD in st.session_state:
            st.button("Back to my files", on_click=_set_mode, args=("upload",))
        return scene, f"sample:{dataset}:{index}"
    kept = st.session_state.get(KEPT_UPLOAD)
    if image_file is None and mask_file is None and kept is not None:
        # Streamlit empties a file box when its page is left: the files are still here, decoded as chosen now
        image, mask, image_name, mask_name = kept
        st.caption(f"Showing your upload **{as_plain_text(image_name)}** and **{as_plain_text(mask_name)}** from "
                   "before (the file boxes empty when you leave the page); upload files to replace them.")
    elif image_file is None or mask_file is None:
        waiting = "Upload an image **and** its mask, or click **Try a sample**."
        for upload, what, other in ((image_file, "image", "mask"), (mask_file, "mask", "image")):
            if upload is not None:  # say now what is wrong with the one file there, not once the other comes
                try:
                    check_header(upload.getvalue(), what)
                    waiting = f"The {what} **{as_plain_text(upload.name)}** is here; now upload its {other}."
                except UploadError as err:
                    st.error(str(err), icon=":material/error:")
        st.info(waiting)
        return None
    else:
        image, mask, image_name, mask_name = image_file.getvalue(), mask_file.getvalue(), image_file.name, mask_file.name
        st.session_state[KEPT_UPLOAD] = (image, mask, image_name, mask_name)
    fixes = {OFFER_RESIZE: st.session_state.get("fix_resize", False),
             OFFER_IGNORE: st.session_state.get("fix_ignore", False)}
    found = _uploaded_scene(image, mask, classes, fixes[OFFER_RESIZE], fixes[OFFER_IGNORE],
                            image_name.rsplit(".", 1)[0])
    offers = found.offers if isinstance(found, SceneProblem) else frozenset()
    if isinstance(found, SceneProblem):
        st.error(found.message, icon=":material/error:")
    if OFFER_RESIZE in offers or fixes[OFFER_RESIZE]:
        st.checkbox("Resize the mask to the image (nearest neighbour)", key="fix_resize")
    if OFFER_IGNORE in offers or fixes[OFFER_IGNORE]:
        st.checkbox("Treat labels or colours outside the classes as ignore (255)", key="fix_ignore")
    if isinstance(found, SceneProblem):
        return None
    key = digest(image, mask, classes, str(sorted(k for k, v in fixes.items() if v)))
    return found, key


@st.cache_resource(max_entries=4, show_spinner="Simulating the prediction...")
def _simulated(scene_key: str, _scene: Scene, knobs: tuple) -> torch.Tensor:
    return simulate.simulate_logits(_scene.labels, _scene.num_classes, ignore_index=_scene.ignore_index,
                                    **dict(knobs))


@st.cache_resource(max_entries=2, show_spinner="Reading the logits...")
def _uploaded_logits(content_key: str, _content: bytes, num_classes: int, size_hw: tuple, kind: str):
    return load_logits(_content, num_classes=num_classes, size_hw=size_hw, kind=kind)


@st.cache_resource(max_entries=2, show_spinner="Loading the checkpoint...")
def _checkpoint(path: str, mtime: float):
    return checkpoints.load_checkpoint(path)


@st.cache_resource(max_entries=4, show_spinner="Running the model...")
def _model_logits(model_key: str, _model, _image, input_size: int | None) -> torch.Tensor:
    return checkpoints.predict_logits(_model, _image, input_size)


def _simulation_knobs(scene: Scene) -> tuple:
    c1, c2 = st.columns(2)
    confidence = c1.slider("Confidence (true-class p away from edges)", 0.05, 0.99, step=0.01, key="sim_confidence",
                           help=f"Below 1/C = {1 / scene.num_classes:.2f} the model prefers a wrong class everywhere.")
    width = c2.slider("Boundary softness (px of doubt at class edges)", 0.0, 32.0, step=0.5, key="sim_width")
    noise = c1.slider("Noise on the logits", 0.0, 4.0, step=0.1, key="sim_noise",
                      help="Smooth random errors: blobs of wrong class.")
    scale = c2.slider("Noise blob size (px)", 0.0, 32.0, step=0.5, key="sim_scale")
    names, classes = scene.class_names, [-1, *range(scene.num_classes)]  # -1: none (None would draw empty)
    for key, what in (("sim_missed", "missed class"), ("sim_to", "class it goes to")):
        if st.session_state.get(key) not in classes:  # a class index from a link or another scene that this one lacks
            if st.session_state.get(key) is not None:
                st.caption(f":material/link_off: The {what} {st.session_state[key]} is not one of this scene's "
                           f"{scene.num_classes} classes (0 to {scene.num_classes - 1}): none is used.")
            st.session_state[key] = -1
    missed = c1.selectbox("The model misses this class", classes, key="sim_missed",
                          format_func=lambda k: "no class" if k < 0 else names[k])
    to = c2.selectbox("...and gives its probability to", classes, disabled=missed < 0, key="sim_to",
                      format_func=lambda k: "the class bordering it most" if k < 0 else names[k])
    missed, to = (None if k < 0 else k for k in (missed, to))
    seed = c1.number_input("Seed", 0, 2**31 - 1, key="sim_seed", help="The same knobs and seed give the same prediction.")
    if missed is not None and to == missed:
        st.warning("A class cannot be missed to itself; its most common neighbour is used instead.")
        to = None
    return (("confidence", confidence), ("boundary_width", width), ("noise", noise), ("noise_scale", scale),
            ("missed_class", missed), ("missed_to", to), ("seed", int(seed)))


def _model_prediction(model, meta: dict, scene: Scene, scene_key: str, model_key: str, label: str):
    classes = int(getattr(model, "num_classes", meta.get("num_classes", 0)))
    if classes != scene.num_classes:
        trained = meta.get("dataset")
        st.error(f"The model predicts {classes} classes{f' ({trained})' if trained else ''} but the mask has "
                 f"{scene.num_classes}; choose the classes it was trained on (Classes, left).", icon=":material/error:")
        return None
    try:
        size = meta.get("image_size")  # run at the scale the model was trained at
        logits = _model_logits(f"{scene_key}:{model_key}", model, scene.image, int(size) if size else None)
    except (RuntimeError, ValueError, MemoryError) as err:
        st.error(f"The model could not run on this image: {err}", icon=":material/error:")
        return None
    return Prediction(logits, f"{scene_key}:{model_key}", label)


def _fitted_prediction(scene: Scene, scene_key: str) -> Prediction | None:
    """Train a fresh tiny U-Net on this image for a few seconds (on request), then predict with it."""
    fitted = st.session_state.get("fitted_model")
    if fitted is None or fitted[0] != scene_key:
        st.caption("Trains a fresh tiny U-Net on this image and mask only, for about five seconds.")
        if not st.button("Fit the tiny model to this image", key="fit_button", icon=":material/model_training:"):
            return None
        bar = st.progress(0.0, text="Fitting...")
        try:
            model, info = fitting.fit_to_image(scene.image, scene.labels, scene.num_classes, seconds=5.0,
                                               ignore_index=scene.ignore_index,
                                               progress=lambda done, msg: bar.progress(done, text=msg))
        except ValueError as err:
            st.error(f"The model could not be fitted: {err}", icon=":material/error:")
            return None
        bar.empty()  # the caption below says it, on this run and the next
        st.session_state["fitted_model"] = fitted = (scene_key, model, info)
    _, model, info = fitted
    st.caption(f"Fitted to this image: {info['steps']} steps at {info['size']} px in {info['seconds']:.1f} s, "
               f"final loss {info['loss']:.3f}.")
    meta = {"num_classes": scene.num_classes, "image_size": info["size"]}
    return _model_prediction(model, meta, scene, scene_key, f"fit:{scene_key}:{id(model)}", "fitted model")


def prediction_input(scene: Scene | None, scene_key: str | None) -> Prediction | None:
    """Where the prediction comes from, with that source's widgets; None until it is usable."""
    found = checkpoints.find_checkpoints(SAMPLE_DIR)
    trainer = st.session_state.get(LIVE_KEY)
    live = getattr(trainer, "model", None) if trainer is not None else None
    options = ["simulate", "logits", "fit"] + (["checkpoint"] if found else []) + (["live"] if live is not None else [])
    source = st.radio("Prediction", options, format_func=SOURCES.get, key="prediction_source")
    if not found:
        st.caption("No shipped checkpoint: a TinyUNet `*.pt` file in `sample_data/` adds that option.")
    if live is None:
        st.caption("No live-trained model yet: train one on the **Live training** page in this tab, then come back.")
    if source == "logits":  # drawn even without a scene, so a bad image upload does not drop the logits
        upload = st.file_uploader("Logits or probabilities: C x H x W or H x W x C, one image", type=["npy", "npz"],
                                  key="upload_logits", max_upload_size=UPLOAD_MB)
        kind = st.radio("They are", ("auto", "logits", "probabilities"), horizontal=True, key="logits_kind")
    if scene is None:
        return None
    if source == "simulate":
        knobs = _simulation_knobs(scene)
        try:
            logits = _simulated(f"{scene_key}:{knobs}", scene, knobs)
        except (ValueError, TypeError, MemoryError) as err:
            st.error(f"The prediction could not be simulated: {err}", icon=":material/error:")
            return None
        return Prediction(logits, f"{scene_key}:sim:{knobs}", "simulated")
    if source == "logits":
        if upload is None:
            st.info(f"Upload a .npy/.npz array of shape ({scene.num_classes}, {scene.labels.shape[0]}, "
                    f"{scene.labels.shape[1]}) saved with np.save; pickles are refused.")
            return None
        content = upload.getvalue()
        key = digest(content, scene_key, kind)
        try:
            loaded = _uploaded_logits(key, content, scene.num_classes, tuple(scene.labels.shape), kind)
        except UploadError as err:
            st.error(str(err), icon=":material/error:")
            return None
        return Prediction(loaded.logits, key, f"your {loaded.kind}")
    if source == "fit":
        return _fitted_prediction(scene, scene_key)
    if source == "checkpoint":
        path = (st.selectbox("Checkpoint", found, format_func=lambda p: str(p.relative_to(SAMPLE_DIR)))
                if len(found) > 1 else found[0])
        try:
            model, meta = _checkpoint(str(path), path.stat().st_mtime)
        except (checkpoints.CheckpointError, OSError) as err:
            st.error(str(err), icon=":material/error:")
            return None
        st.caption(f"`{path.name}`: TinyUNet, {meta['num_classes']} classes"
                   f"{', trained on ' + str(meta['dataset']) if meta.get('dataset') else ''}.")
        model_key = f"ckpt:{path.name}:{path.stat().st_mtime}"
        return _model_prediction(model, meta, scene, scene_key, model_key, "checkpoint")
    step = getattr(trainer, "steps_done", 0)
    st.caption(f"The live-training model as of step {step} (refreshes when it has trained more).")
    config = getattr(trainer, "config", None)
    meta = {"dataset": getattr(config, "dataset", None), "image_size": getattr(config, "image_size", None)}
    model = trainer.model_copy() if hasattr(trainer, "model_copy") else live  # between two steps, never half-updated
    return _model_prediction(model, meta, scene, scene_key, f"live:{id(trainer)}:{step}", "live model")


UPLOAD_INPUTS = "upload_inputs"  # read by the Library conventions page


def share_with_conventions(scene: Scene, prediction: Prediction) -> None:
    """Offer this image and prediction to the Library conventions page (by reference, no copy)."""
    st.session_state[UPLOAD_INPUTS] = {"logits": prediction.logits, "labels": scene.labels, "name": scene.name,
                                       "prediction": prediction.label, "ignore_index": scene.ignore_index}
