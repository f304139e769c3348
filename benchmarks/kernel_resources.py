"""Compile every Triton kernel the losses launch for a GPU, without one, and report its resources.

Triton compiles ahead of time for a named target (``GPUTarget("cuda", 90, 32)``: the H100/H200)
with the ``ptxas`` shipped in its wheel, so a CPU machine can check what the interpreter cannot:
that each kernel variant really compiles for the GPU, how many registers a thread takes, and
whether any spill to local memory. Each loss of ``bench_gpu.py`` is called forward + backward on
small CPU tensors with every kernel launch turned into a compile (``warmup``; nothing runs, so
the values are garbage and are not looked at); the kernels are those real calls build, with their
real block sizes, warps and constexpr flags.

Per kernel variant it prints: registers per thread, local memory (spills) in bytes, shared
memory, warps, and the warps per SM that the registers allow (64 K registers per SM, at most
64 warps): an occupancy bound, the only speed figure a compile can give. No time is guessed.

Usage: python benchmarks/kernel_resources.py [--classes 2 19 150 1024] [--dtypes float32 bfloat16]
                                             [--pairs 19:float32 1024:bfloat16] [--index-64]
                                             [--arch 90] [--json out.json]
Run it with ``TRITON_INTERPRET`` unset (it is cleared here before triton is imported).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

REGISTERS_PER_SM = 65536
MAX_WARPS_PER_SM = 64


class _CompileOnlyDriver:
    """Just enough of a triton driver for compiling: a device 0, a stream 0, the chosen target."""

    def __init__(self, arch: int) -> None:
        from triton.backends.compiler import GPUTarget

        self.target = GPUTarget("cuda", arch, 32)

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_current_target(self):
        return self.target

    def get_active_torch_device(self):
        return torch.device("cpu")

    def is_active(self):
        return True


@contextlib.contextmanager
def compile_only(arch: int = 90):
    """Within: Triton kernel launches compile for ``sm_<arch>`` and run nothing; yields the list
    of ``(kernel name, CompiledKernel)`` launched, in launch order (a variant compiles once)."""
    from triton.runtime import driver
    from triton.runtime.jit import KernelInterface

    from segloss.kernels import cuda, device_checks

    compiled: list = []

    def launch(self, grid):
        def compile_call(*args, **kwargs):
            compiled.append((self.fn.__name__, self.run(*args, grid=grid, warmup=True, **kwargs)))
        return compile_call

    original_getitem = KernelInterface.__getitem__
    original_raise = device_checks.raise_bad_input
    previous = getattr(driver, "_active", None)  # None without a GPU: no driver is found then
    driver.set_active(_CompileOnlyDriver(arch))
    KernelInterface.__getitem__ = launch
    device_checks.raise_bad_input = lambda *args, **kwargs: None  # the flags are never written: nothing ran
    cuda.run_on_cpu_for_tests(True)
    try:
        yield compiled
    finally:
        cuda.run_on_cpu_for_tests(False)
        device_checks.raise_bad_input = original_raise
        KernelInterface.__getitem__ = original_getitem
        driver._active = previous


def resources(kernel) -> dict:
    """Registers, spills (local bytes), shared bytes and warps of a compiled kernel, read from its
    cubin with the ``cuobjdump`` beside triton's ``ptxas``."""
    import re
    import tempfile

    import triton

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(kernel.asm["cubin"])
        cubin.flush()
        report = subprocess.run([str(tool), "--dump-resource-usage", cubin.name], capture_output=True,
                                text=True, check=True).stdout
    fields = dict(re.findall(r"\b(REG|STACK|SHARED|LOCAL):(\d+)", report))
    warps = kernel.metadata.num_warps
    registers = int(fields["REG"])
    blocks = REGISTERS_PER_SM // max(1, registers * 32 * warps)
    return {"registers": registers, "local_bytes": int(fields["LOCAL"]), "stack_bytes": int(fields["STACK"]),
            "shared_bytes": int(fields["SHARED"]), "num_warps": warps,
            "warps_per_sm": min(MAX_WARPS_PER_SM, blocks * warps)}


def survey(configs=((19, "float32"),), arch: int = 90, losses=None, index_64: bool = False,
           multi_step: bool = False) -> list[dict]:
    """Compile the kernels of each loss of ``bench_gpu.py`` for each ``(classes, dtype name)``.

    Returns one row per compiled variant: ``loss`` (the first loss that built it), ``classes``,
    ``dtype``, ``kernel`` and :func:`resources`. ``losses`` keeps only names containing one of
    its strings. Forward with ``reduction="mean"``; CE and Dual Focal (fixed and learnable parameters)
    and focal with gamma a device tensor (``GAMMA_FROM_PTR``) also with ``"none"``, CE and
    soft Dice also on channels_last logits (another stride specialisation); each call with the
    gradient written in forward and recomputed in backward (``cuda.GRADIENT_IN_FORWARD``). ``multi_step``:
    one forward program for the whole batch, so that each walks several tiles (``NUM_STEPS`` > 1,
    as on a real batch, where the tiny survey batch would fold the loop away).
    """
    from bench_gpu import segloss_losses

    from segloss import functional as SF
    from segloss.kernels import cuda

    rows = []
    saved = (cuda.GRADIENT_IN_FORWARD, cuda.INT32_LIMIT, cuda.MAX_PROGRAMS, cuda.REGION_PROGRAMS_PER_IMAGE)
    gradient_in_forward = cuda.GRADIENT_IN_FORWARD
    if index_64:
        cuda.INT32_LIMIT = 0
    if multi_step:
        cuda.MAX_PROGRAMS = cuda.REGION_PROGRAMS_PER_IMAGE = 1
    with compile_only(arch) as compiled:
        for c, dtype_name in configs:
            seen: set = set()  # variants reported once per configuration
            dtype = getattr(torch, dtype_name)
            table = dict(segloss_losses(c, "cpu"))
            table["segloss cross_entropy (none)"] = lambda z, y: SF.cross_entropy(z, y, reduction="none").sum()
            table["segloss dual_focal_loss (none)"] = lambda z, y: SF.dual_focal_loss(
                z, y, reduction="none").sum()
            table["segloss dual_focal_loss (learnable, none)"] = lambda z, y: SF.dual_focal_loss(
                z, y, gamma=torch.tensor(2.0, requires_grad=True), reduction="none").sum()
            table["segloss focal_loss (gamma a device tensor)"] = lambda z, y: SF.focal_loss(
                z, y, gamma=torch.tensor(2.0))  # gamma read from a pointer, the gradient formed in forward
            table["segloss focal_loss (gamma a device tensor, none)"] = lambda z, y: SF.focal_loss(
                z, y, gamma=torch.tensor(2.0), reduction="none").sum()
            layouts = {"segloss cross_entropy (channels_last)": "channels_last",
                       "segloss soft Dice (channels_last)": "channels_last"}
            table["segloss cross_entropy (channels_last)"] = table["segloss cross_entropy"]
            table["segloss soft Dice (channels_last)"] = table["segloss soft Dice"]
            for name, fn in table.items():
                if fn is None or "Lovász" in name:
                    continue  # no Triton kernel of its own (a sort)
                if losses and not any(part in name for part in losses):
                    continue
                before = len(compiled)
                for in_forward in (True, False):  # both ways to the gradient (cuda.GRADIENT_IN_FORWARD)
                    cuda.GRADIENT_IN_FORWARD = in_forward
                    z = torch.randn(2, c, 8, 16).to(dtype)
                    if layouts.get(name) == "channels_last":
                        z = z.to(memory_format=torch.channels_last)
                    z.requires_grad_()
                    fn(z, torch.randint(0, c, (2, 8, 16))).backward()
                cuda.GRADIENT_IN_FORWARD = gradient_in_forward
                for kernel_name, kernel in compiled[before:]:
                    if id(kernel) in seen:
                        continue
                    seen.add(id(kernel))
                    rows.append({"loss": name, "classes": c, "dtype": dtype_name, "kernel": kernel_name,
                                 "index_64": index_64, "multi_step": multi_step, **resources(kernel)})
    cuda.GRADIENT_IN_FORWARD, cuda.INT32_LIMIT, cuda.MAX_PROGRAMS, cuda.REGION_PROGRAMS_PER_IMAGE = saved
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[2, 19, 150, 1024])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--pairs", nargs="+", metavar="C:DTYPE",
                        help="instead of every --classes x --dtypes: e.g. 19:float32 1024:bfloat16")
    parser.add_argument("--arch", type=int, default=90, help="compute capability x 10 (90: H100/H200)")
    parser.add_argument("--losses", nargs="*", help="only losses whose name holds one of these")
    parser.add_argument("--index-64", action="store_true", help="64-bit offsets in every variant")
    parser.add_argument("--multi-step", action="store_true", help="forward programs that loop over several tiles")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.pairs:
        configs = [(int(c), dtype) for c, dtype in (pair.split(":") for pair in args.pairs)]
    else:
        configs = [(c, dtype) for c in args.classes for dtype in args.dtypes]
    rows = survey(configs, args.arch, args.losses, args.index_64, args.multi_step)
    print(f"sm_{args.arch}: {len(rows)} kernel variants compiled")
    print(f"{'kernel':<28} {'C':>5} {'dtype':<9} {'warps':>5} {'regs':>5} {'spill B':>7} {'warps/SM':>8}  first built by")
    for row in rows:
        print(f"{row['kernel']:<28} {row['classes']:>5} {row['dtype']:<9} {row['num_warps']:>5} "
              f"{row['registers']:>5} {row['local_bytes']:>7} {row['warps_per_sm']:>8}  {row['loss']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
