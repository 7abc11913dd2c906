"""The README's Python examples run as written (each block in a fresh namespace, in a temp folder)."""
import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def _fashion_mnist_present() -> bool:
    from ember.data.datasets import FashionMNIST

    try:
        FashionMNIST(train=False, download=False)
        return True
    except Exception:
        return False


def test_readme_has_examples():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_block_runs(i, tmp_path, monkeypatch):
    code = BLOCKS[i]
    if "FashionMNIST(" in code and not _fashion_mnist_present():
        pytest.skip("Fashion-MNIST is not on this machine (the example would download it)")
    monkeypatch.chdir(tmp_path)
    os.environ.setdefault("MPLBACKEND", "Agg")
    exec(compile(code, f"README.md block {i}", "exec"), {"__name__": "__readme__"})
