"""docs/examples/test_my_spec.py, the complete example test file docs/testing.md shows, run
as part of our suite (pytest collects tests/ only): its tests are imported here."""
from __future__ import annotations

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parent.parent / "docs" / "examples" / "test_my_spec.py"
_spec = importlib.util.spec_from_file_location("docs_example_test_my_spec", _PATH)
_example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_example)

globals().update({k: v for k, v in vars(_example).items()
                  if k.startswith("test_") or k == "model"})
