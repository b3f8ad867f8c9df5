"""model_zoo depends on layers (and TensorFlow/NumPy), never on the service."""
import ast
import sys
from pathlib import Path

import model_zoo

ALLOWED_THIRD_PARTY = {"layers", "tensorflow", "numpy", "tqdm", "sklearn"}


def _imported_top_level_modules(path: Path) -> set:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_model_zoo_imports_only_layers_tensorflow_numpy_and_the_stdlib():
    for path in Path(model_zoo.__file__).parent.glob("*.py"):
        foreign = {m for m in _imported_top_level_modules(path)
                   if m not in ALLOWED_THIRD_PARTY and m not in sys.stdlib_module_names}
        assert not foreign, f"{path.name} imports {sorted(foreign)}"


def test_the_digits_data_and_preprocessing_load_without_tensorflow():
    """A JSON payload from the digits data must not cost a TensorFlow import (seconds); the architectures
    load on the registry's first use, and a fresh process still refuses a duplicate of a built-in one."""
    import subprocess

    code = (
        "import sys; sys.modules['tensorflow'] = None; sys.modules['layers'] = None\n"  # any import of them fails
        "import model_zoo, model_zoo.datasets as D, model_zoo.preprocess as P\n"
        "d = D.load_digits(); assert d.heldout_x.shape == (359, 28, 28), d.heldout_x.shape\n"
        "assert P.resize(d.heldout_x[0], (14, 14)).shape == (14, 14)\n"
        "del sys.modules['tensorflow'], sys.modules['layers']\n"
        "import dataclasses\n"
        "try:\n"
        "    @model_zoo.register('vgg16')\n"
        "    @dataclasses.dataclass(frozen=True)\n"
        "    class Dup(model_zoo.ArchitectureConfig):\n"
        "        pass\n"
        "except ValueError as e:\n"
        "    assert 'already registered' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('a duplicate of a built-in architecture was accepted')\n"
        "assert 'mnist-convnet' in model_zoo.names() and model_zoo.MnistConvNetConfig.architecture == 'mnist-convnet'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       cwd=Path(model_zoo.__file__).parents[1])
    assert r.returncode == 0, r.stderr[-3000:]
