"""The Pi never installs TensorFlow: every gate module must import with it absent."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import gate

BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'tensorflow', 'keras', 'tf_keras', 'training', 'convert'}:
            raise ImportError('blocked on the Pi: ' + name)
sys.meta_path.insert(0, Block())
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
leaked = sorted(m for m in sys.modules if m.split('.')[0] in {'tensorflow', 'keras'})
assert not leaked, leaked
print('ok', len(sys.argv) - 1)
"""


def test_gate_imports_without_tensorflow():
    modules = ["gate"] + [f"gate.{m.name}" for m in pkgutil.iter_modules(gate.__path__)]
    result = subprocess.run([sys.executable, "-c", BLOCKER, *modules], capture_output=True, text=True, cwd=Path(gate.__file__).parent.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ok {len(modules)}"
