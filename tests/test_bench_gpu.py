"""benchmarks/bench_gpu.py runs end to end before it meets a GPU (a lent GPU's minutes are few).

Here ``measure`` and ``copy_floor`` are replaced by one forward + backward of each loss on tiny
batches through the Triton kernels (in triton's interpreter on CPU tensors where CUDA is missing),
so every loss entry, the contenders, the table and the launch-settings sweep are exercised for
real; the timing code itself runs once on its own.
"""

import re
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_gpu  # noqa: E402
from segloss.kernels import cuda  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture
def cpu_bench(monkeypatch):
    calls = []

    def measure(fn, logits, target, repeats, warmup):
        z = logits.detach().clone().requires_grad_()
        out = fn(z, target)
        if out.requires_grad:
            out.backward()
        assert z.grad is None or torch.isfinite(z.grad).all()
        calls.append((cuda.TILE_ELEMENTS, cuda.NUM_WARPS, cuda.GRADIENT_IN_FORWARD, cuda.MAX_PROGRAMS,
                      cuda.REGION_PROGRAMS_PER_IMAGE))
        return 2.0, 1.0

    monkeypatch.setattr(bench_gpu, "measure", measure)
    monkeypatch.setattr(bench_gpu, "copy_floor", lambda logits, repeats: 0.5)
    cuda.run_on_cpu_for_tests(DEVICE == "cpu")
    yield calls
    cuda.run_on_cpu_for_tests(False)


def test_every_loss_of_the_table_runs_on_the_kernel_path(cpu_bench, capsys):
    blocks = []
    rows = bench_gpu.run([(1, 3, 4, 5)], [torch.float32, torch.bfloat16], repeats=1, warmup=0, device=DEVICE,
                         on_block=lambda rows: blocks.append(len(rows)))
    assert blocks == [len(rows) // 2, len(rows)]  # reported as each shape and dtype is done
    losses = {row["loss"] for row in rows}
    assert {"torch F.cross_entropy", "device copy of the logits", "segloss dual_focal_loss",
            "segloss soft Dice", "segloss Lovász-Softmax", "segloss RecallLoss(momentum 0.9)"} <= losses
    assert all(row["x_copy"] == 4.0 for row in rows if row["loss"].startswith("segloss"))
    assert "Error" not in capsys.readouterr().err


def test_the_sweep_times_every_launch_setting_and_restores_the_defaults(cpu_bench, capsys):
    defaults = (cuda.TILE_ELEMENTS, cuda.NUM_WARPS, cuda.GRADIENT_IN_FORWARD, cuda.MAX_PROGRAMS,
                cuda.REGION_PROGRAMS_PER_IMAGE)
    progress = []
    rows = bench_gpu.sweep([(1, 19, 3, 4)], [torch.float32], repeats=1, warmup=0, device=DEVICE,
                           on_progress=lambda rows: progress.append(len(rows)))
    assert (cuda.TILE_ELEMENTS, cuda.NUM_WARPS, cuda.GRADIENT_IN_FORWARD, cuda.MAX_PROGRAMS,
            cuda.REGION_PROGRAMS_PER_IMAGE) == defaults
    timed = set(cpu_bench[1:])  # after torch CE's call (the copy floor is stubbed)
    assert timed == {(tile, warps, f, *defaults[3:]) for tile, warps in bench_gpu.SWEEP_SETTINGS for f in (True, False)} \
        | {(*defaults[:3], programs, region) for programs, region in bench_gpu.PROGRAM_SETTINGS}
    assert len(rows) == len(bench_gpu.SWEEP_SETTINGS) * (4 + 3) + len(bench_gpu.PROGRAM_SETTINGS) * 4
    assert len(progress) == len(bench_gpu.SWEEP_SETTINGS) * 2 + len(bench_gpu.PROGRAM_SETTINGS)  # saved per setting
    assert bench_gpu._sweep_points()[:2] == [(*defaults[:2], True, *defaults[3:]), (*defaults[:2], False, *defaults[3:])]
    assert {row["programs"] for row in rows} == {f"{p}/{r}" for p, r in [defaults[3:], *bench_gpu.PROGRAM_SETTINGS]}
    assert "Error" not in capsys.readouterr().err


def test_tables_print_every_row(capsys):
    row = {"shape": "1x3x4x5", "dtype": "float32", "loss": "x", "ms": 1.0, "x_torch_ce": 2.0, "x_copy": 3.0,
           "extra_memory": 1.0, "tile": 2048, "warps": 8, "gradient": "forward", "programs": "1024/64"}
    bench_gpu.print_table([row, {**row, "loss": "y"}])
    bench_gpu.print_table([row], bench_gpu.SWEEP_COLUMNS)
    out = capsys.readouterr().out
    assert "| x | 1.000 | 2.00 | 3.00 | 1.00 |" in out and "| y |" in out
    assert "| 2048 | 8 | forward | 1024/64 | x | 1.000 | 2.00 | 3.00 | 1.00 |" in out


def _main_on_a_pretend_gpu(monkeypatch, tmp_path):
    """``main``'s arguments for two tiny shapes (saving to ``rows.json``) with CUDA said to be there."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda: "a GPU")
    out = tmp_path / "rows.json"
    return ["--shapes", "1x3x4x5", "1x19x2x3", "--dtypes", "float32", "--repeats", "1", "--json", str(out)], out


@pytest.mark.parametrize("sweep", [False, True])
def test_main_prints_and_saves_as_it_measures(cpu_bench, monkeypatch, tmp_path, capsys, sweep):
    import json

    real = bench_gpu.sweep if sweep else bench_gpu.run
    saved = []

    def on_cpu(*args, on_block, on_progress):
        def spy(rows):
            on_block(rows)
            saved.append(len(json.loads(out.read_text())))

        def progress(rows):  # saved after every loss (table) or setting (sweep)
            on_progress(rows)
            saved.append(len(json.loads(out.read_text())))
        return real(*args, device=DEVICE, on_block=spy, on_progress=progress)

    monkeypatch.setattr(bench_gpu, "sweep" if sweep else "run", on_cpu)
    args, out = _main_on_a_pretend_gpu(monkeypatch, tmp_path)
    assert bench_gpu.main(args + (["--sweep"] if sweep else [])) == 0
    rows = json.loads(out.read_text())
    # saved as it measures (each loss of the table, each setting of the sweep), never losing a row
    progress = len(bench_gpu._sweep_points()) + 1 if sweep else len(rows) + 2
    assert len(saved) == progress and saved == sorted(saved) and saved[-1] == len(rows) and saved[0] < len(rows)
    printed = capsys.readouterr().out
    assert printed.startswith("GPU: a GPU") and printed.count("(1x3x4x5) float32") == 1
    assert printed.count("\n|---") == 2 and printed.count("\n| ") == len(rows) + 2


def test_the_timing_itself_runs_on_a_loss_and_on_the_copy_floor():
    """The script's own ``measure`` and ``copy_floor`` (replaced by ``cpu_bench`` above), on CPU tensors:
    the floor times a clone of logits that need no gradient, a loss times forward + backward."""
    from segloss import functional as SF

    logits, target = bench_gpu._batch(1, 3, (4, 5), torch.float32, DEVICE)
    floor = bench_gpu.copy_floor(logits, repeats=2)
    ms, memory = bench_gpu.measure(lambda z, y: SF.cross_entropy(z, y), logits, target, repeats=2, warmup=1)
    assert floor > 0 and ms > 0
    assert (memory >= 1.0) if DEVICE == "cuda" else (memory != memory)  # NaN: no memory figure off CUDA
    assert not logits.requires_grad


@pytest.mark.parametrize("sweep", [False, True])
def test_a_time_limit_prints_and_keeps_what_was_measured(cpu_bench, monkeypatch, tmp_path, capsys, sweep):
    """run_on_device.sh stops each step with SIGINT: the rows measured so far are printed, grouped by
    shape, and saved (the sweep prints its table only at the end otherwise)."""
    import json

    stub, calls = bench_gpu.measure, []

    def measure_then_stop(*args):
        calls.append(1)
        if len(calls) > 12:
            raise KeyboardInterrupt
        return stub(*args)

    real = bench_gpu.sweep if sweep else bench_gpu.run
    monkeypatch.setattr(bench_gpu, "measure", measure_then_stop)
    monkeypatch.setattr(bench_gpu, "sweep" if sweep else "run", lambda *a, **k: real(*a, device=DEVICE, **k))
    args, out = _main_on_a_pretend_gpu(monkeypatch, tmp_path)
    assert bench_gpu.main(args + (["--sweep"] if sweep else [])) == 130
    rows = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert 0 < len(rows) <= 13 and f"stopped after {len(rows)} rows" in printed  # 12 timed (+ the stubbed floor)
    assert all(f"| {row['loss']} |" in printed for row in rows)


def test_bench_compile_times_a_loss_eagerly_and_compiled(capsys):
    """benchmarks/bench_compile.py's own code, for real on a tiny CPU batch: torch CE (the baseline)
    and one segloss loss, each eager and through torch.compile; the ratios are of the same run."""
    import bench_compile

    torch._dynamo.reset()
    rows = bench_compile.run((2, 3, 8, 8), torch.float32, "cpu", repeats=2, warmup=1,
                             names=["segloss focal_loss (gamma 2)"])
    assert [row["loss"] for row in rows] == ["torch F.cross_entropy", "segloss focal_loss (gamma 2)"]
    assert rows[0]["eager_x_torch_ce"] == 1.0
    for row in rows:
        assert row["eager_ms"] > 0 and row["compiled_ms"] > 0 and row["compile_s"] > 0
        assert row["compiled_x_torch_ce"] == pytest.approx(row["compiled_ms"] / rows[0]["eager_ms"])
    bench_compile.print_table(rows)
    assert "| segloss focal_loss (gamma 2) |" in capsys.readouterr().out


def test_every_test_file_on_the_kernels_path_runs_on_the_device():
    """``run_on_device.sh`` runs the files in ``device_tests.txt`` on a lent GPU: each file that drives
    the Triton kernels through ``triton_support`` must be listed there, or its CUDA cases never run."""
    root = Path(__file__).resolve().parents[1]
    listed = set((root / "benchmarks" / "device_tests.txt").read_text().split())
    using = {f"tests/{path.name}" for path in (root / "tests").glob("test_*.py")
             if re.search(r"^from triton_support import", path.read_text(), re.MULTILINE)}
    assert using and using <= listed, using - listed


def test_the_trainers_device_benchmark_runs_without_plotly_or_pil():
    """``bench_training.py --steps-only`` (run_on_device.sh's last step) on a machine that has torch and
    numpy but no plotly, PIL or streamlit, nor segloss installed (the checkout travels), as the GPU
    machine: a broken import would cost its minutes."""
    import subprocess

    code = ("import sys\n"
            "for name in ('plotly', 'PIL', 'streamlit', 'pandas'): sys.modules[name] = None\n"
            # nor segloss installed: the checkout travels there, the script must find it itself
            "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
            "sys.path[:] = [p for p in sys.path if 'editable' not in p]\n"
            "sys.argv = ['bench_training.py', '--steps-only', '--batch-size', '2', '--image-size', '32', "
            "'--rounds', '1', '--seconds', '0.3']\n"
            "import bench_training; bench_training.main()\n")
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                            cwd=root / "benchmarks")
    assert result.returncode == 0, result.stderr[-2000:]
    for line in ("batches drawn by one process", "batches from trainer.batch()", "step() loop", "thread alone"):
        assert re.search(re.escape(line) + r"[^\n]*?\s\d+\.\d\d (/s|steps/s)", result.stdout), result.stdout
