"""The Triton kernels compile for the GPU people train on (sm_90: H100/H200), without a GPU.

Triton's interpreter (``test_triton_*.py``) checks the kernels' arithmetic but not that
they compile: types, layouts and register allocation only meet ``ptxas`` on a GPU target.
``benchmarks/kernel_resources.py`` compiles every kernel variant the losses launch (their real
block sizes and flags) ahead of time with the ``ptxas`` in triton's wheel, in a subprocess
without ``TRITON_INTERPRET``; here every loss family must compile, and no variant may spill
registers to local memory (a spill in a bandwidth-bound kernel is a slow kernel).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNELS = {"focal_forward_kernel", "focal_backward_kernel", "dual_focal_forward_kernel",
           "dual_focal_backward_kernel", "region_sums_kernel", "region_backward_kernel", "denominator_kernel",
           "scale_gradient_kernel", "min_plus_parabola_kernel",
           "boundary_forward_kernel", "boundary_backward_kernel"}


SURVEY_SECONDS = 280  # one cold compile survey; the fixture runs three, within the module's pytest timeout
pytestmark = pytest.mark.timeout(3 * SURVEY_SECONDS + 60)  # the fixture's time counts toward its first test's
PAIRS = ((19, "float32"), (19, "bfloat16"), (1024, "bfloat16"), (2, "float16"))
MULTI_STEP_PAIRS = ("19:float32", "150:bfloat16")


def _survey(out, *args):
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "kernel_resources.py"), *args, "--json", str(out)],
        capture_output=True, text=True, env=env, timeout=SURVEY_SECONDS)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Every variant at the ``PAIRS``, again with 64-bit offsets (C = 19, bfloat16), and with forward
    programs that loop over several tiles (``NUM_STEPS`` > 1, as on a real batch: more registers live)."""
    folder = tmp_path_factory.mktemp("sm90")
    return (_survey(folder / "kernels.json", "--pairs", *(f"{c}:{dtype}" for c, dtype in PAIRS))
            + _survey(folder / "kernels64.json", "--pairs", "19:bfloat16", "--index-64")
            + _survey(folder / "looped.json", "--pairs", *MULTI_STEP_PAIRS, "--multi-step"))


def test_every_kernel_compiles_for_sm90(compiled):
    cases = (*((c, d, False, False) for c, d in PAIRS), (19, "bfloat16", True, False),
             *((int(c), d, False, True) for c, d in (pair.split(":") for pair in MULTI_STEP_PAIRS)))
    for classes, dtype, index_64, multi_step in cases:
        built = {row["kernel"] for row in compiled
                 if (row["classes"], row["dtype"], row["index_64"], row["multi_step"]) == (classes, dtype, index_64,
                                                                                            multi_step)}
        # float16 never writes the gradient in forward (cuda.GRADIENT_IN_FORWARD): no label pass, no scaling
        expected = KERNELS - {"denominator_kernel", "scale_gradient_kernel"} if dtype == "float16" else KERNELS
        assert built == expected, (classes, dtype, expected ^ built)


def test_no_kernel_spills_registers(compiled):
    """No spill and no stack frame, but one: the looped Dual Focal forward with ``reduction="none"`` at
    C = 150 bfloat16 parks two 4-byte values in an 8-byte frame (two stores and two loads per
    program, outside its tile loop: read from the SASS); up to 16 bytes are allowed there alone."""
    def allowed_stack(row):
        known = (row["kernel"], row["classes"], row["dtype"], row["multi_step"]) == (
            "dual_focal_forward_kernel", 150, "bfloat16", True)
        return 16 if known else 0

    spilled = [(row["kernel"], row["classes"], row["dtype"], row["index_64"], row["loss"], row["local_bytes"],
                row["stack_bytes"]) for row in compiled
               if row["local_bytes"] or row["stack_bytes"] > allowed_stack(row)]
    assert not spilled


def test_report_reads_real_resources(compiled):
    """The figures come from the cubins: registers vary between variants and stay in range."""
    registers = {row["registers"] for row in compiled}
    assert len(registers) > 3 and all(8 <= r <= 255 for r in registers)
    assert all(row["num_warps"] in (1, 2, 4, 8, 16) for row in compiled)
