"""jaxcond.files: atomic writes leave the old or the new file, never a half-written one."""
import json
import os

import pytest

from jaxcond import files


def test_write_json_replaces_and_leaves_no_temporary(tmp_path):
  path = tmp_path / "results.json"
  files.write_json(path, {"a": 1})
  files.write_json(path, {"a": [2, 3]}, indent=1)
  assert json.loads(path.read_text()) == {"a": [2, 3]}
  assert sorted(os.listdir(tmp_path)) == ["results.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
  path = tmp_path / "results.json"
  files.write_json(path, {"ok": True})
  with pytest.raises(TypeError):          # not JSON-serialisable: fails before replacing
    files.write_json(path, {"bad": object()})
  assert json.loads(path.read_text()) == {"ok": True}
