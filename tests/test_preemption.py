"""jaxcond.preemption: what SIGTERM and Ctrl-C do while a program holds a `Preemption`
(one process here; the multi-process sync point is tested with the 2-process harness in
tests/test_condense.py)."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest

from jaxcond import cli, preemption

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_sigterm_asks_to_stop_and_handlers_are_restored():
  before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
  with preemption.Preemption() as stop:
    assert stop.active and not stop.multi
    assert not stop.should_stop(1) and stop.requested is None
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.requested == "SIGTERM" and stop.should_stop(2)
  assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
  assert not stop.should_stop(3)           # outside the block: never


def test_first_sigint_asks_to_stop_and_a_second_one_aborts():
  before = signal.getsignal(signal.SIGINT)
  with preemption.Preemption() as stop:     # library: the second raises KeyboardInterrupt
    os.kill(os.getpid(), signal.SIGINT)
    assert stop.requested == "SIGINT" and stop.should_stop(1)
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)
  with preemption.Preemption(command_line=True) as stop:
    os.kill(os.getpid(), signal.SIGINT)
    # the command line's second Ctrl-C is the default action: the process ends at once
    assert stop.requested == "SIGINT" and signal.getsignal(signal.SIGINT) == signal.SIG_DFL
  assert signal.getsignal(signal.SIGINT) == before


def test_immediate_raises_at_once_and_between_raises_between_units():
  with preemption.Preemption() as stop:
    with pytest.raises(preemption.PreemptedError, match="^stopped while loading$"):
      with stop.immediate("stopped while loading"):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("the signal did not stop the block")
    with pytest.raises(preemption.PreemptedError):      # already asked: on entry
      with stop.immediate(lambda: "asked before"):
        pass
    with pytest.raises(preemption.PreemptedError, match="before unit 2"):
      stop.between("preempted before unit 2")
  with preemption.Preemption() as stop:
    stop.between("never raised")                        # nothing asked


def test_outside_the_main_thread_nothing_is_installed():
  seen = {}

  def body():
    with preemption.Preemption() as stop:
      seen["active"] = stop.active
      seen["stop"] = stop.should_stop(1)
  t = threading.Thread(target=body)
  t.start()
  t.join()
  assert seen == {"active": False, "stop": False}


def test_command_line_immediate_stop_prints_cleans_up_and_exits_3(tmp_path):
  """On the command line a signal inside `immediate` ends the process with status 3 (no
  exception through interrupted XLA work), after the line and the cleanups."""
  marker = tmp_path / "released"
  code = (
      "import os, signal, time, pathlib\n"
      "from jaxcond import preemption\n"
      "with preemption.Preemption(command_line=True) as stop:\n"
      f"  stop.cleanups.append(lambda: pathlib.Path({str(marker)!r}).write_text('yes'))\n"
      "  with stop.immediate('preempted while starting: nothing to save'):\n"
      "    os.kill(os.getpid(), signal.SIGTERM)\n"
      "    time.sleep(30)\n"
      "print('not reached')\n")
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                     timeout=120)
  assert p.returncode == preemption.EXIT_PREEMPTED == 3, p.stderr[-2000:]
  assert p.stderr.strip().splitlines() == ["preempted while starting: nothing to save"]
  assert "not reached" not in p.stdout and marker.read_text() == "yes"


def test_cli_exit_statuses(capsys):
  program = cli.Program("x", "test", config="none", workdir="none")

  def preempted(_):
    raise preemption.PreemptedError("preempted at step 7: checkpoint written to D; re-run")

  def interrupted(_):
    raise KeyboardInterrupt

  assert cli.main(program, preempted, ["x"]) == cli.EXIT_PREEMPTED == 3
  assert capsys.readouterr().err == "preempted at step 7: checkpoint written to D; re-run\n"
  assert cli.main(program, interrupted, ["x"]) == cli.EXIT_INTERRUPTED == 130
  assert capsys.readouterr().err == "interrupted\n"
  assert len({cli.EXIT_OK, cli.EXIT_FAILED, cli.EXIT_USAGE, cli.EXIT_PREEMPTED}) == 4


@pytest.mark.slow
def test_evaluate_stops_at_once_on_sigterm(tmp_path):
  """evaluate writes one results.json at the end: SIGTERM stops it at once (status 3),
  with nothing written and its lock removed; a re-run starts again."""
  work = tmp_path / "eval"
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="1")
  proc = subprocess.Popen([sys.executable, "-m", "jaxcond.evaluate", "--config",
                           "experiments/quickstart.py", "--workdir", str(work), "--baseline",
                           "random"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:
    try:
      if json.loads((work / "lock.json").read_text())["pid"] == proc.pid:
        break
    except (OSError, ValueError, KeyError):
      pass
    time.sleep(0.05)
  time.sleep(1.0)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 3, err[-3000:]
  assert err.strip().splitlines() == ["preempted: an evaluation keeps nothing half way; "
                                      "re-run the same command to evaluate again"]
  assert sorted(os.listdir(work)) == []
