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
