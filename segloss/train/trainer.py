"""Train a :class:`~segloss.train.model.TinyUNet` with any registry loss, step by step or in a thread.

:class:`Trainer` is plain Python + torch (no UI code). It draws a fresh batch of a sample
dataset every step (step ``k`` of seed ``s`` always gets the same batch), keeps a fixed
validation batch, and records, in bounded memory, the training loss, the learnable Dual Focal
parameters and the recall-loss class weights per step, and the per-class IoU / recall /
precision on the validation batch every ``eval_every`` steps. A UI polls :meth:`snapshot`
(cheap, thread-safe) while a background thread started by :meth:`start` trains::

    trainer = Trainer(dataset="street", loss="focal", loss_params={"gamma": 2.0})
    trainer.step()["loss"]                      # one synchronous optimisation step
    trainer.start(total_steps=500)              # train in a daemon thread
    trainer.pause(); trainer.resume(); trainer.stop()
    snap = trainer.snapshot()                   # status, step, histories, latest ValidationView

On CUDA the forward pass runs under ``torch.autocast`` (float16) with a ``GradScaler``; the
losses compute in float32 whatever the logits' dtype. On CPU everything is float32.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import copy
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from segloss.train import data
from segloss.train.background import BackgroundLoop
from segloss.train.evaluation import MEAN_METRICS, PER_CLASS_METRICS, ValidationView, validate
from segloss.train.history import BoundedHistory
from segloss.losses.modules import DualFocalLoss, RecallLoss, ScheduledSumLoss
from segloss.train.model import TinyUNet
from segloss.train.prefetch import BatchPrefetcher, default_workers
from segloss.losses.registry import LOSSES, create_loss

VALIDATION_SEED = 987_654_321  # fixed for every trainer, so runs with different seeds compare fairly
MAX_IMAGE_SIZE = 512
_INIT_LOCK = threading.Lock()  # seeding the global CPU generator for weight init is process-wide


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` picks CUDA when available, else the CPU.

    Raises:
        ValueError: unknown device string, or CUDA requested but not available.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False")
    return device


def _check_int(value, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must lie in [{low}, {high if high is not None else 'inf'}], got {value}")
    return int(value)


class _KeptBuffers:
    """Copies of a list of buffers (taken by :meth:`save`, put back by :meth:`restore`), copied with
    ``torch._foreach_copy_``: one fused copy per dtype and device, not one launch per buffer."""

    def __init__(self, live: list[torch.Tensor]):
        self.live = live
        self.copies = [torch.empty_like(b) for b in live]

    def save(self) -> None:
        if self.live:
            with torch.no_grad():
                torch._foreach_copy_(self.copies, self.live)

    def restore(self) -> None:
        if self.live:
            with torch.no_grad():
                torch._foreach_copy_(self.live, self.copies)


@dataclass(frozen=True)
class TrainerConfig:
    """The arguments a :class:`Trainer` was built with (validated)."""

    dataset: str = "street"
    loss: str = "focal"
    loss_params: Mapping = field(default_factory=dict)
    batch_size: int = 8
    image_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    device: str = "cpu"


@dataclass(frozen=True)
class TrainerSnapshot:
    """A consistent copy of a trainer's state; nothing in it changes after it is taken.

    ``history``: ``step`` int64 ``(K,)``, ``loss`` float32 ``(K,)``, ``dfl_<name>`` ``(K,)`` per
    learnable Dual Focal parameter, ``recall_weights`` ``(K, C)`` for recall loss (each row a
    window mean, see :class:`~segloss.train.history.BoundedHistory`). ``evaluations``: ``step``
    ``(E,)``, ``miou``/``mean_accuracy``/``overall_accuracy`` ``(E,)``, ``iou``/``recall``/
    ``precision`` ``(E, C)``. ``view``: the latest :class:`ValidationView` or None.
    ``val_images`` uint8 ``(V, H, W, 3)`` and ``val_masks`` uint8 ``(V, H, W)``: the fixed
    validation batch the view was computed on.
    """

    config: TrainerConfig
    status: str
    message: str | None
    step: int
    total_steps: int | None
    steps_per_second: float
    history: dict
    evaluations: dict
    view: ValidationView | None
    val_images: np.ndarray
    val_masks: np.ndarray


class Trainer(BackgroundLoop):
    """TinyUNet + a registry loss + Adam on a sample dataset; see the module docstring.

    Args:
        dataset: ``"street"`` or ``"lesion"``.
        loss: a key of :data:`segloss.LOSSES`.
        loss_params: the loss's parameters (missing ones take the registry default).
        batch_size: images per step, 1-256.
        image_size: side of the square images, 32-512.
        lr: Adam learning rate in (0, 1].
        seed: same seed => same initial weights and same batches in the same order.
        device: None (CUDA if available, else CPU), or a device string.
        eval_every: steps between validations while training in the thread (>= 1).
        val_size: images in the fixed validation batch, 1-64.
        history_size: rows kept per history (even, >= 2); older rows are merged pairwise.
        width: TinyUNet channel width.
        prefetch_workers: processes drawing the next batches ahead (:mod:`segloss.train.prefetch`);
            None: 0 on the CPU, up to 8 on a GPU. The batches are the same either way.
        schedule_every: steps per "epoch" of a loss with a schedule (Dice + boundary moves its
            weights once per epoch); the sample data are drawn afresh, so an epoch is a choice.

    Raises:
        ValueError / TypeError: bad arguments (messages name the argument and the value).
    """

    def __init__(self, dataset: str = "street", loss: str = "focal", loss_params: Mapping | None = None,
                 batch_size: int = 8, image_size: int = 64, lr: float = 1e-3, seed: int = 0,
                 device: str | torch.device | None = None, *, eval_every: int = 10, val_size: int = 8,
                 history_size: int = 512, width: int = 16, prefetch_workers: int | None = None,
                 schedule_every: int = 10) -> None:
        info = data.get_dataset(dataset)
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose from {sorted(LOSSES)}")
        if loss_params is not None and not isinstance(loss_params, Mapping):
            raise TypeError(f"loss_params must be a dict of the loss's parameters, got {type(loss_params).__name__}")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (0 < lr <= 1) or not math.isfinite(lr):
            raise ValueError(f"lr must be a number in (0, 1], got {lr!r}")
        self.device = choose_device(device)
        self.config = TrainerConfig(
            dataset=dataset, loss=loss, loss_params=dict(loss_params or {}),
            batch_size=_check_int(batch_size, "batch_size", 1, 256),
            image_size=_check_int(image_size, "image_size", data.MIN_IMAGE_SIZE, MAX_IMAGE_SIZE),
            lr=float(lr), seed=_check_int(seed, "seed", 0, 2**63 - 1), device=str(self.device))
        self.eval_every = _check_int(eval_every, "eval_every", 1)
        self.schedule_every = _check_int(schedule_every, "schedule_every", 1)
        self.history_size = _check_int(history_size, "history_size", 2)
        self.width = _check_int(width, "width", 1, 256)
        self.info = info
        self.num_classes = info.num_classes
        self.amp = self.device.type == "cuda"
        workers = default_workers(self.device) if prefetch_workers is None else _check_int(
            prefetch_workers, "prefetch_workers", 0, 64)
        self._prefetcher = None if workers == 0 else BatchPrefetcher(
            functools.partial(data.make_batch, dataset, self.config.batch_size, self.config.image_size),
            self._batch_seed, workers)
        self._counts = (data.class_pixel_counts(dataset, self.config.image_size) if LOSSES[loss].needs_class_counts
                        else None)
        self._criterion_for("mean")  # validates loss_params before anything else is built
        images, masks = data.make_batch(dataset, _check_int(val_size, "val_size", 1, 64), self.config.image_size,
                                        VALIDATION_SEED)
        self.val_images, self.val_masks = images.to(self.device), masks.to(self.device)
        self._val_rgb = np.stack([data.to_uint8_image(image) for image in images])  # (V, H, W, 3), for display
        self._val_labels = masks.numpy().astype(np.uint8)
        self._val_rgb.setflags(write=False)  # shared by every snapshot: read-only
        self._val_labels.setflags(write=False)
        self._step_lock = threading.RLock()  # one optimisation step (or reset) at a time
        self._waiting = 0  # callers outside the loop waiting for _step_lock (see _between_steps)
        self._waiting_changed = threading.Condition()
        self._init_loop()  # thread control; its _state_lock also guards what snapshot() copies
        self._init_state()

    # ----------------------------------------------------------------- construction and state
    def _criterion_for(self, reduction: str) -> torch.nn.Module:
        return create_loss(self.config.loss, class_counts=self._counts, reduction=reduction,
                           **self.config.loss_params).to(self.device)

    def _init_state(self) -> None:
        """(Re)build model, loss and optimiser from the seed; clear the records."""
        with _INIT_LOCK, torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            model = TinyUNet(in_channels=3, num_classes=self.num_classes, width=self.width)
        self.model = model.to(self.device)
        self.criterion = self._criterion_for("mean")
        # the per-pixel loss map; region losses have none (their view shows gradient maps)
        self.pixel_criterion = self._criterion_for("none") if LOSSES[self.config.loss].pixelwise else None
        # fused: one kernel for all parameters (the CPU default is a dozen small ops per parameter)
        self.optimizer = torch.optim.Adam([*self.model.parameters(), *self.criterion.parameters()],
                                          lr=self.config.lr, fused=True)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp else None
        self.learnable = tuple(getattr(self.criterion, "learnable", ()))
        columns = {"loss": 0, **{f"dfl_{name}": 0 for name in self.learnable}}
        if isinstance(self.criterion, RecallLoss):
            columns["recall_weights"] = self.num_classes
        if isinstance(self.criterion, ScheduledSumLoss):
            columns.update({f"weight_{part}": 0 for part in self.criterion.current_weights()})
        per_class = {name: self.num_classes for name in PER_CLASS_METRICS}
        with self._state_lock:
            self.steps_done = 0
            self.total_steps = None
            self.status, self.message = "idle", None
            self.history = BoundedHistory(self.history_size, columns, mode="mean")
            self.evaluations = BoundedHistory(self.history_size, {**dict.fromkeys(MEAN_METRICS, 0), **per_class},
                                              mode="last")
            self.view: ValidationView | None = None
            self._last_evaluated = -1
            self._step_times: collections.deque[float] = collections.deque(maxlen=32)

    def _batch_seed(self, index: int) -> int:
        return int(np.random.SeedSequence([self.config.seed, int(index)]).generate_state(1)[0])

    def batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The training batch of step ``index`` (0-based): a function of (seed, index) only.

        Returns images float32 ``(B, 3, S, S)`` and masks int64 ``(B, S, S)`` on the CPU, drawn
        ahead by the prefetcher's processes when there is one.
        """
        if self._prefetcher is not None:
            return self._prefetcher.get(int(index))
        return data.make_batch(self.config.dataset, self.config.batch_size, self.config.image_size,
                               self._batch_seed(index))

    def close(self) -> None:
        """Stop training and the prefetching processes (the trainer stays readable)."""
        self.stop()
        if self._prefetcher is not None:
            self._prefetcher.close()
            self._prefetcher = None

    # ----------------------------------------------------------------------------- training
    def _keep_buffers(self) -> "_KeptBuffers":
        """A copy of the model's and the loss's floating-point and integer buffers, taken before a
        step's forward pass, so that a diverged step can put them back (one fused copy per dtype)."""
        buffers = [b for module in (self.model, self.criterion) for b in module.buffers()]
        kept = getattr(self, "_kept_buffers", None)
        if kept is None or len(kept.live) != len(buffers) or any(a is not b for a, b in zip(kept.live, buffers)):
            kept = self._kept_buffers = _KeptBuffers(buffers)
        kept.save()
        return kept

    def step(self) -> dict:
        """One optimisation step on the next batch.

        Returns:
            ``{"step": steps done after it, "loss": float, "seconds": wall time}``.

        Raises:
            FloatingPointError: if the loss or (without AMP's scaler, which skips such steps itself)
                the gradient is NaN or infinite (lower the learning rate: a new run); the weights,
                the optimizer's state and the buffers of model and loss (BatchNorm's running statistics,
                a recall loss's running weights) are left as they were, the step is not counted.
        """
        with self._waiting_changed:  # let a copy, an evaluation or a reset that waits go first
            self._waiting_changed.wait_for(lambda: self._waiting == 0)
        with self._step_lock:
            start = time.perf_counter()
            images, masks = self.batch(self.steps_done)
            images = images.to(self.device, non_blocking=True)
            masks = masks.to(self.device, non_blocking=True)
            self.model.train()
            self.criterion.train()
            buffers = self._keep_buffers()  # BatchNorm's statistics, a recall loss's running weights
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                logits = self.model(images)
            loss = self.criterion(logits, masks)  # losses upcast half-precision logits to float32
            value = float(loss.detach())  # checked before the weights change; the buffers are put back
            if not math.isfinite(value):
                buffers.restore()
                raise FloatingPointError(f"loss is {value} at step {self.steps_done + 1} "
                                         f"(lr={self.config.lr}); lower the learning rate")
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:  # skips a step whose gradient overflowed, and lowers its scale
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                loss.backward()
                grads = [p.grad for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
                norm = torch.nn.utils.get_total_norm(grads)  # the model's and a learnable loss's
                if not math.isfinite(float(norm)):
                    self.optimizer.zero_grad(set_to_none=True)
                    buffers.restore()
                    raise FloatingPointError(f"the gradient is {float(norm)} at step {self.steps_done + 1} "
                                             f"(lr={self.config.lr}); lower the learning rate")
                self.optimizer.step()
            record = {"loss": value}
            if isinstance(self.criterion, DualFocalLoss):
                params = self.criterion.current_params()
                record.update({f"dfl_{name}": params[name] for name in self.learnable})
            if isinstance(self.criterion, RecallLoss):
                record["recall_weights"] = self.criterion.class_weights.detach().float().cpu().numpy()
            if isinstance(self.criterion, ScheduledSumLoss):  # the weights this step used, then the epoch's end
                record.update({f"weight_{part}": w for part, w in self.criterion.current_weights().items()})
                if (self.steps_done + 1) % self.schedule_every == 0:
                    self.criterion.schedule_step()
            now = time.perf_counter()
            with self._state_lock:
                self.steps_done += 1
                self.history.append(self.steps_done, **record)
                self._step_times.append(now)
            return {"step": self.steps_done, "loss": value, "seconds": now - start}

    def _compute_view(self) -> ValidationView:
        self.model.eval()
        self.criterion.eval()
        if self.pixel_criterion is not None:
            self.pixel_criterion.load_state_dict(self.criterion.state_dict())
            self.pixel_criterion.eval()
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            return validate(self.model, self.criterion, self.val_images, self.val_masks, step=self.steps_done,
                            pixel_loss=self.pixel_criterion)

    def validate(self) -> ValidationView:
        """Evaluate on the fixed validation batch and keep the result as the latest view.

        Model and loss are evaluated in eval mode (BatchNorm running statistics; recall loss
        uses the batch's recall, or its running weights when momentum > 0); step() puts them
        back in training mode.
        """
        with self._between_steps():
            view = self._compute_view()
            with self._state_lock:
                self.view = view
            return view

    def evaluate(self) -> dict:
        """Metrics on the fixed validation batch, recorded in the evaluation history.

        Returns:
            ``step`` (int), ``iou``/``recall``/``precision`` float64 ``(C,)`` (NaN where
            undefined) and ``miou``/``mean_accuracy``/``overall_accuracy`` floats.
        """
        with self._between_steps():
            view = self._compute_view()
            with self._state_lock:  # view and its history row appear together in snapshots
                self.view = view
                if view.step != self._last_evaluated:  # one record per step, however often asked
                    self.evaluations.append(view.step, **view.metrics)
                    self._last_evaluated = view.step
            return {"step": view.step, **view.metrics}

    @contextlib.contextmanager
    def _between_steps(self):
        """``_step_lock`` for a caller beside the loop (a model copy, an evaluation, a reset), taken
        before the loop's next step: a lock is not fair, and the loop, which takes it again right
        after each step, could otherwise keep a waiting caller out for many steps (seen: a copy
        asked for at step 0 of 20 got the model after step 20)."""
        with self._waiting_changed:
            self._waiting += 1
        try:
            with self._step_lock:
                yield
        finally:
            with self._waiting_changed:
                self._waiting -= 1
                self._waiting_changed.notify_all()

    def model_copy(self) -> TinyUNet:
        """A copy of the model in eval mode on the CPU, taken between two steps (so never half
        updated), e.g. to predict with while the thread keeps training."""
        with self._between_steps():
            return copy.deepcopy(self.model).cpu().eval()

    # ------------------------------------------------------------------ the background loop
    def _before_loop(self) -> None:
        if self.device.type == "cpu":
            # this thread only (intra-op threads are per thread): the small ops of a tiny U-Net gain ~3%
            # from a second thread alone, while several sessions training at once lose ~30% to oversubscription
            torch.set_num_threads(1)
        if self.view is None:
            self.evaluate()  # the untrained model, so curves and maps start at step 0

    def _after_step(self) -> None:
        if self.steps_done % self.eval_every == 0 or self.steps_done == self.total_steps:
            self.evaluate()

    def reset(self) -> None:
        """Stop, then start over from step 0 with the same seed (same weights, same batches)."""
        self.stop()
        with self._between_steps():
            self._init_state()

    # ---------------------------------------------------------------------------- reading
    def snapshot(self) -> TrainerSnapshot:
        """A consistent, immutable copy of the state (copies only the bounded histories)."""
        with self._state_lock:
            times = self._step_times
            rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
            return TrainerSnapshot(
                config=self.config, status=self.status, message=self.message, step=self.steps_done,
                total_steps=self.total_steps, steps_per_second=rate if self.status == "running" else 0.0,
                history=self.history.arrays(), evaluations=self.evaluations.arrays(), view=self.view,
                val_images=self._val_rgb, val_masks=self._val_labels)
