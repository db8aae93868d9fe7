"""jaxcond.workdir: one run per workdir (the lock); the shared-workdir check with one
process (the 2-process check is in tests/test_condense.py)."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from jaxcond import condense, report, workdir
from jaxcond.errors import ConfigError

from test_condense import tiny_config


def _dead_pid():
  p = subprocess.Popen([sys.executable, "-c", "pass"])
  p.wait()
  return p.pid


def _write_lock(d, **fields):
  d.mkdir(parents=True, exist_ok=True)
  rec = {**workdir.holder_record("python -m jaxcond.condense ..."), **fields}
  (d / "lock.json").write_text(json.dumps(rec))
  return rec


def test_lock_holds_host_pid_and_start_and_refuses_a_second_run(tmp_path):
  with workdir.acquire(tmp_path / "w", command="first") as lock:
    rec = json.loads((tmp_path / "w" / "lock.json").read_text())
    assert rec["host"] == socket.gethostname() and rec["pid"] == os.getpid()
    assert rec["started"].endswith("+00:00") and rec["command"] == "first"
    assert lock.record == rec
    with pytest.raises(ConfigError) as err:
      workdir.acquire(tmp_path / "w", command="second")
    msg = str(err.value)
    assert msg.startswith(f"workdir: {tmp_path / 'w'} is in use by another run (host "
                          f"{socket.gethostname()}, pid {os.getpid()}, started ")
    assert msg.endswith(": first); wait for it to end or use another --workdir") and "\n" not in msg
    # named locks (nas shards, continual orders) are separate
    workdir.acquire(tmp_path / "w", name="shard-0-of-2").release()
  assert not (tmp_path / "w" / "lock.json").exists()
  assert sorted(os.listdir(tmp_path / "w")) == []


@pytest.mark.parametrize("why", ["dead pid", "rebooted", "pid reused"])
def test_a_lock_whose_run_is_gone_is_taken_over_with_a_warning(tmp_path, why):
  fields = {"dead pid": {"pid": _dead_pid()},
            "rebooted": {"boot_id": "00000000-0000-0000-0000-000000000000"},
            "pid reused": {"pid_start": "1"}}[why]   # our own pid, another start tick
  old = _write_lock(tmp_path, **fields)
  lines = []
  with workdir.acquire(tmp_path, warn=lines.append) as lock:
    assert lock.record["pid"] == os.getpid() and lock.record != old
  (line,) = lines
  assert line.startswith(f"warning: {tmp_path} was locked by a run that is gone (host ")
  assert f"pid {old['pid']}" in line and line.endswith("; taking the lock over")


def test_a_lock_from_another_host_is_refused_with_what_to_delete(tmp_path):
  _write_lock(tmp_path, host="tpu-worker-7", pid=1234)
  with pytest.raises(ConfigError) as err:
    workdir.acquire(tmp_path)
  assert str(err.value) == (
      f"workdir: {tmp_path} is locked by a run on another host (host tpu-worker-7, pid "
      f"1234, started {json.loads((tmp_path / 'lock.json').read_text())['started']}: "
      f"python -m jaxcond.condense ...); if that run is gone, delete {tmp_path}/lock.json")


def test_an_unreadable_old_lock_is_taken_over(tmp_path):
  (tmp_path / "lock.json").write_text("")
  old = time.time() - 60
  os.utime(tmp_path / "lock.json", (old, old))
  lines = []
  workdir.acquire(tmp_path, warn=lines.append).release()
  assert len(lines) == 1 and "unreadable" in lines[0]


def test_condense_refuses_a_locked_workdir_and_report_needs_no_lock(tmp_path, capsys):
  condense.run(tiny_config("dm", steps=2, checkpoint_every=0), str(tmp_path))
  with workdir.acquire(tmp_path, command="the other run"):
    rc = condense.main(["condense", "--config", "experiments/quickstart.py", "--workdir",
                        str(tmp_path), "--config.steps=2"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: workdir: {tmp_path} is in use by another run") and \
        "the other run" in err
    assert report.write(tmp_path).endswith("report.html")             # no lock needed
    # (`--plan` takes no --workdir at all)


def test_shared_check_is_a_no_op_with_one_process(tmp_path):
  workdir.check_shared(tmp_path / "nowhere")
  assert not (tmp_path / "nowhere").exists()


def test_the_lock_names_the_command_as_typed(monkeypatch):
  monkeypatch.setattr(sys, "argv", [f"{os.sep}x{os.sep}jaxcond{os.sep}condense.py",
                                    "--workdir", "runs/a"])
  assert workdir.current_command() == "python -m jaxcond.condense --workdir runs/a"
  monkeypatch.setattr(sys, "argv", [f"{os.sep}x{os.sep}jaxcond{os.sep}evaluate{os.sep}"
                                    "__main__.py", "--workdir", "e"])
  assert workdir.current_command() == "python -m jaxcond.evaluate --workdir e"
