"""docs/course.md's Python blocks run as written, in order, in one namespace (as a student would run
them in one session), in a temp folder; the asserts in them are the page's claims."""
import os
import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "course.md"


def test_course_blocks_run_in_order(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 25
    monkeypatch.chdir(tmp_path)
    os.environ.setdefault("MPLBACKEND", "Agg")
    namespace = {"__name__": "__course__"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/course.md block {i}", "exec"), namespace)
