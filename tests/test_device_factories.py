"""No tensor is created on the CPU by default on a loss's per-call path (the class of the
``dual_focal_loss(rho != 1)`` crash on CUDA): every ``torch.tensor``/``zeros``/``full``/... in the
loss core and the kernels names its device, or is listed here with the reason it is safe."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FACTORIES = {"tensor", "zeros", "ones", "full", "arange", "empty", "linspace", "eye", "as_tensor", "scalar_tensor",
             "rand", "randn", "randint", "zeros_like", "ones_like"}
LIKE = {"zeros_like", "ones_like"}  # take their device from their argument
SAFE = {  # (file, enclosing function): why a device-less factory there cannot meet a CUDA input
    ("losses/_checks.py", "class_vector"): "a user's Python sequence, moved with .to(device=like.device) next",
    ("losses/_checks.py", "check_number"): "a Python number while torch.compile traces: a host scalar that only "
                                           "an assert reads (dynamo passes a changed float as one too)",
    ("losses/_checks.py", "is_numpy_number"): "a numpy scalar while torch.compile traces, made a tensor only for "
                                              "its dtype (static to dynamo); never used as data",
    ("losses/_module_base.py", "_weight_buffer"): "module construction: a buffer, moved by module.to(device)",
    ("losses/modules.py", "__init__"): "module construction: parameters and buffers move with the module",
    ("losses/sum_modules.py", "__init__"): "module construction: the schedule's buffer moves with the module",
    ("losses/modules.py", "current_params"): "as_tensor of the module's own value, for logging",
    ("losses/weights.py", "pixel_counts"): "as_tensor keeps a tensor's device; lists are CPU label data",
    ("losses/weights.py", "_as_counts"): "as_tensor keeps a tensor's device; lists are CPU counts",
    ("losses/weights.py", "count_pixels"): "as_tensor keeps a tensor's device; numpy masks are CPU label data",
    ("losses/weights.py", "median_frequency"): "as_tensor keeps the counts' device; made once, before training",
    ("losses/boundary.py", "signed_distance_maps"): "as_tensor keeps a tensor's device; CUDA labels' maps are "
                                                      "made there, others by scipy and moved to the labels' device",
}


def device_less_factories(path: Path):
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
                and node.func.attr in FACTORIES and node.func.attr not in LIKE):
            continue
        if {k.arg for k in node.keywords} & {"device", None}:
            continue
        scope = node
        while scope in parents and not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
            scope = parents[scope]
        yield node.lineno, getattr(scope, "name", "<module>"), ast.unparse(node)


def test_loss_paths_create_tensors_on_the_inputs_device():
    found = []
    for folder in ("losses", "kernels"):
        for path in sorted((ROOT / "segloss" / folder).glob("*.py")):
            rel = f"{folder}/{path.name}"
            for line, function, call in device_less_factories(path):
                if (rel, function) not in SAFE:
                    found.append(f"segloss/{rel}:{line} in {function}(): {call}")
    assert not found, "tensors made without device= on a loss path:\n" + "\n".join(found)


def test_the_check_finds_the_rho_bug_it_was_written_for(tmp_path):
    buggy = tmp_path / "cpu.py"
    buggy.write_text("import math, torch\n"
                     "def _dual_focal_block(z, rho):\n"
                     "    return torch.logaddexp(z, torch.tensor(math.log(rho - 1), dtype=z.dtype))\n")
    assert [f for _, f, _ in device_less_factories(buggy)] == ["_dual_focal_block"]
