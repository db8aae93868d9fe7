"""Progress lines (`jaxcond.progress`): rate-limited plain lines off a terminal, in-place
redraws on one, a log callable, `track`."""
import io

from jaxcond import progress


class _Clock:
  def __init__(self):
    self.t = 0.0

  def __call__(self):
    return self.t


class _Tty(io.StringIO):
  def isatty(self):
    return True


def test_progress_prints_rate_limited_plain_lines_off_a_terminal():
  clock, out = _Clock(), io.StringIO()
  bar = progress.Progress("decoding x", 1000, unit="images", every=5, first=2, stream=out,
                          clock=clock)
  bar.update(10)                   # t=0: before `first`
  clock.t = 2.5
  bar.update(90)                   # first line
  clock.t = 4.0
  bar.update(100)                  # rate-limited
  clock.t = 8.0
  bar.update(300)                  # second line
  clock.t = 10.0
  bar.set(1000)
  bar.close()
  lines = out.getvalue().splitlines()
  assert "\r" not in out.getvalue() and len(lines) == 3, lines
  assert lines[0].startswith("decoding x: 100/1,000 images (10%) 40/s ETA")
  assert lines[1].startswith("decoding x: 500/1,000 images (50%)")
  assert lines[2] == "decoding x: 1,000/1,000 images (100%) in 10.0s (100/s)"


def test_progress_is_silent_for_quick_work_and_redraws_on_a_terminal():
  clock, out = _Clock(), io.StringIO()
  with progress.Progress("quick", 5, stream=out, clock=clock) as bar:
    bar.update(5)
  assert out.getvalue() == ""
  clock, tty = _Clock(), _Tty()
  bar = progress.Progress("slow", 4, stream=tty, every=1, first=1, clock=clock)
  for i in range(4):
    clock.t = 1.0 + i * 1.5
    bar.update(1)
  bar.close()
  assert tty.getvalue().count("\r") == 5 and tty.getvalue().endswith("\n")


def test_progress_log_callable_and_track():
  got, clock = [], _Clock()

  def items():
    for i in range(3):
      clock.t += 3.0
      yield i

  assert list(progress.track(items(), "embedding", 3, log=got.append, every=0,
                             first=0, clock=clock)) == [0, 1, 2]
  assert got[-1].startswith("embedding: 3/3 (100%) in") and len(got) == 4


def test_passes_line_is_the_evaluation_progress_style():
  assert progress.passes_line(120, 1001, 12.0) == "pass 120/1001  12.0s  ETA 1m28s"
  assert progress.format_duration(7384.0) == "2h03m"
