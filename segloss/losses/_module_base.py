"""What every loss ``nn.Module`` shares (:mod:`segloss.losses.modules`, :mod:`~segloss.losses.region_modules`,
:mod:`~segloss.losses.sum_modules`): class weights as a float32 buffer, buffers and parameters that stay
normal tensors when moved inside ``torch.inference_mode()``, running state kept in float32 in a
half-precision model, and the pixel losses' common state (weight, ignore_index, reduction)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from segloss.losses._checks import check_reduction, index_argument


def _weight_buffer(values, name: str) -> torch.Tensor | None:
    """Class weights as a float32 tensor buffer (validated again, against C, at call time)."""
    if values is None:
        return None
    if isinstance(values, (int, float)):
        raise TypeError(f"{name} must be a per-class sequence or tensor, got the number {values!r}")
    try:
        with torch.inference_mode(False):  # a loss built in inference mode still trains (see ScheduledSumLoss)
            tensor = torch.as_tensor(values, dtype=torch.float32).detach().clone()
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{name} must be a 1-D tensor or a sequence of numbers, got {values!r}") from err
    if tensor.dim() != 1:
        raise ValueError(f"{name} must be 1-D (one entry per class), got shape {tuple(tensor.shape)}")
    return tensor


def _short(vector: torch.Tensor) -> str:
    """A class vector for a repr: its values, or its length and range when long."""
    if vector.device.type == "meta":
        return f"({vector.numel()} values)"
    values = vector.detach().flatten().tolist()
    if len(values) <= 6:
        return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"
    return f"({len(values)} values in [{min(values):.4g}, {max(values):.4g}])"


class _NormalTensors(nn.Module):
    """A loss whose buffers and parameters stay normal tensors when the module is moved or converted
    (``.to(device)``, ``.double()``) inside ``torch.inference_mode()`` (a validation loop, an app
    helper): inference tensors could not be saved for backward, updated in place (running weights)
    or learned (Dual Focal's parameters) by the training step after."""

    def _apply(self, fn, recurse=True):
        with torch.inference_mode(False):
            return super()._apply(fn, recurse)


class _Float32State(_NormalTensors):
    """Running state (the buffers named in ``_state_buffers``) and learned loss parameters (those
    named by ``_state_parameters()``) kept in at least float32 when the module tree is converted to
    half precision (``model.to(torch.bfloat16)``, ``.half()``, bf16-true training): each small update
    of an EMA or a schedule would be rounded away in bfloat16 (an EMA at momentum 0.99 stops moving
    0.08 short), and a learned gamma of 2.0 would read 1.99. Device moves and float64 apply as usual;
    a parameter keeps its identity (an optimizer holding it still steps it)."""

    _state_buffers: tuple[str, ...] = ()

    def _state_parameters(self) -> tuple[str, ...]:
        return ()

    def _apply(self, fn, recurse=True):
        before = {name: self._buffers.get(name) for name in self._state_buffers}
        params = {name: self._parameters[name].data for name in self._state_parameters()
                  if self._parameters.get(name) is not None}
        super()._apply(fn, recurse)
        for name, old in params.items():
            param = self._parameters[name]
            if param.is_floating_point() and param.element_size() < 4 <= old.element_size():
                with torch.inference_mode(False), torch.no_grad():
                    param.data = old.to(device=param.device)  # moved, not rounded
                    if param.grad is not None:
                        param.grad = param.grad.to(old.dtype)
        for name, old in before.items():
            new = self._buffers.get(name)
            if old is not None and new is not None and new.is_floating_point() and new.element_size() < 4 <= \
                    old.element_size():
                with torch.inference_mode(False):  # .to(device, bfloat16) inside inference mode: a normal tensor
                    self._buffers[name] = old.to(device=new.device)  # moved, not rounded
        return self


class _PixelLoss(_NormalTensors):
    """Common state: class ``weight`` buffer, ``ignore_index`` and ``reduction``."""

    def __init__(self, weight=None, ignore_index: int = 255, reduction: str = "mean") -> None:
        super().__init__()
        check_reduction(reduction)
        ignore_index = index_argument(ignore_index)  # a numpy integer is stored as an int
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise TypeError(f"ignore_index must be an int, got {ignore_index!r}")
        self.register_buffer("weight", _weight_buffer(weight, "weight"))
        self.ignore_index = ignore_index
        self.reduction = reduction

    def _common(self) -> dict:
        return {"weight": self.weight, "ignore_index": self.ignore_index, "reduction": self.reduction}

    def extra_repr(self) -> str:
        weight = "" if self.weight is None else f"weight={_short(self.weight)}, "
        return f"{weight}ignore_index={self.ignore_index}, reduction={self.reduction!r}"

    # A loss that sums over a torch.distributed process group (``sync_distributed=group``) holds the
    # group, a handle to live connections: a copy, shallow or deep (an EMA of a model holding the
    # loss), shares it; pickling refuses with a message instead of torch's "cannot pickle ProcessGroup".
    def _state(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_compiled_call_impl", None)  # as nn.Module.__getstate__
        return state

    def __copy__(self):
        copied = type(self).__new__(type(self))
        copied.__dict__.update(self._state())
        return copied

    def _group(self):
        """The process group this loss sums over, or None (True, False or no such setting)."""
        group = self.__dict__.get("sync_distributed")
        return None if isinstance(group, bool) else group

    def __deepcopy__(self, memo):
        if (group := self._group()) is not None:
            memo[id(group)] = group
        copied = type(self).__new__(type(self))
        memo[id(self)] = copied
        copied.__dict__.update(copy.deepcopy(self._state(), memo))
        return copied

    def __getstate__(self):
        if self._group() is not None:
            raise TypeError(f"{type(self).__name__} sums over a torch.distributed process group (sync_distributed), "
                            "which cannot be pickled: save its state_dict, or set sync_distributed to True or False "
                            "before pickling and give the group again after loading")
        return super().__getstate__()
