"""Evaluation protocols, training loop, CutMix, results format and CLI (jaxcond.evaluate)."""
import json
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcond import evaluate as ev
from jaxcond import synthetic_io
from jaxcond.errors import ConfigError, DataError

from conftest import load_experiment
from evalnets import TinyBN, TinyMLP
from evalnets import net_fns as _net
from evalnets import random_data as _random_data


# ----------------------------------------------------------------------------- protocols


def test_dm_lr_schedule_exact():
  s = ev.EvalSettings.for_protocol("dm")
  assert (s.epochs, s.passes, s.batch_size) == (1000, 1001, 256)
  assert (s.lr, s.momentum, s.weight_decay, s.mix_p) == (0.01, 0.9, 5e-4, 0.0)
  # the reference decays after epoch index Epoch//2 + 1 = 501, so pass 502 is the first slow one
  assert s.lr_at(0) == 0.01 and s.lr_at(501) == 0.01
  assert s.lr_at(502) == pytest.approx(0.001, rel=1e-12)
  assert s.lr_at(1000) == pytest.approx(0.001, rel=1e-12)
  traced = jax.jit(s.lr_at)(jnp.arange(1001))
  np.testing.assert_allclose(traced, [s.lr_at(e) for e in range(1001)], rtol=1e-6)
  assert s.checkpoint_passes() == (1001,)


def test_idc_lr_schedule_exact():
  s = ev.EvalSettings.for_protocol("idc")
  assert (s.epochs, s.passes, s.batch_size, s.mix_p, s.eval_every_epochs) == (1000, 1000, 64,
                                                                              0.5, 500)
  assert s.strategy == "color_crop_flip_scale_rotate"
  assert s.milestones == (666, 833)
  assert s.lr_at(665) == 0.01
  assert s.lr_at(666) == pytest.approx(0.002, rel=1e-12)
  assert s.lr_at(832) == pytest.approx(0.002, rel=1e-12)
  assert s.lr_at(833) == pytest.approx(0.0004, rel=1e-12)
  assert s.lr_at(999) == pytest.approx(0.0004, rel=1e-12)
  traced = jax.jit(s.lr_at)(jnp.arange(1000))
  np.testing.assert_allclose(traced, [s.lr_at(e) for e in range(1000)], rtol=1e-6)
  assert s.checkpoint_passes() == (500, 1000)
  assert ev.EvalSettings.for_protocol("idc", epochs=12, eval_every_epochs=5).checkpoint_passes() \
      == (5, 10, 12)


def test_momentum_reset_only_at_dm_decay_point():
  s = ev.EvalSettings.for_protocol("dm")
  assert [e for e in range(1001) if s.resets_momentum_at(e)] == [502]
  idc = ev.EvalSettings.for_protocol("idc")
  assert not any(idc.resets_momentum_at(e) for e in range(1000))


def test_momentum_buffer_is_zeroed_in_the_reset_pass():
  s = ev.EvalSettings.for_protocol("dm", epochs=4, strategy="none", batch_size=40)
  assert s.milestones == (4,)
  net = _net(TinyMLP(), (6, 6, 1))
  x, y = _random_data()
  state = ev.init_state(net, jax.random.key(0))
  buf = jax.tree.map(lambda p: jnp.full_like(p, 0.3), state["params"])
  zero = {**state, "momentum": jax.tree.map(jnp.zeros_like, buf)}
  junk = {**state, "momentum": buf}
  key = jax.random.key(1)
  run = jax.jit(lambda st, e: ev.train_pass(net, s, st, x, y, key, e))
  same = run(zero, 4), run(junk, 4)
  jax.tree.map(np.testing.assert_array_equal, same[0]["params"], same[1]["params"])
  diff = run(zero, 3)["params"], run(junk, 3)["params"]
  assert not np.allclose(diff[0]["Dense_0"]["kernel"], diff[1]["Dense_0"]["kernel"])


def test_settings_validation_and_config(experiment):
  with pytest.raises(ConfigError, match="protocol"):
    ev.EvalSettings(protocol="dc")
  with pytest.raises(ConfigError, match="mix_p"):
    ev.EvalSettings.for_protocol("dm", mix_p=0.5)
  with pytest.raises(ConfigError, match="num_nets"):
    ev.EvalSettings(num_nets=0)
  with pytest.raises(ConfigError, match="unknown op"):
    ev.EvalSettings(strategy="color_jitter")
  assert ev.EvalSettings.for_protocol("dm", dataset="mnist").strategy == \
      "color_crop_cutout_scale_rotate"
  assert ev.EvalSettings.for_protocol("dm", dataset="cifar10").strategy == ev.DM_STRATEGY
  c = experiment("fashion_mnist.py:method=m3d,eval.epochs=30,eval.every=100,"
                 "eval.models=('convnet','alexnet_bn')")
  s = ev.EvalSettings.from_config(c)
  assert (s.protocol, s.epochs, s.batch_size, s.strategy) == ("idc", 30, 64, ev.IDC_STRATEGY)
  assert s.pool == ("convnet", "alexnet_bn")
  dm_config = experiment("cifar10.py:method=dm,eval.eval_every_epochs=500")
  dm = ev.EvalSettings.from_config(dm_config)
  assert dm.checkpoint_passes() == (1001,)
  dm_config.eval.mix_p = 0.5
  with pytest.raises(ConfigError, match="mix_p"):
    ev.EvalSettings.from_config(dm_config)
  # the digits rule (no flip) reaches the settings through the config's dataset block
  assert ev.EvalSettings.from_config(experiment("quickstart.py")).strategy == \
      "color_crop_cutout_scale_rotate"


# ----------------------------------------------------------------------------- optimiser


def test_sgd_matches_hand_computed_torch_step():
  p = {"w": jnp.array([1.0, -2.0])}
  buf = {"w": jnp.array([0.2, 0.0])}
  g = {"w": jnp.array([0.5, 1.0])}
  new_p, new_buf = ev.sgd_update(p, buf, g, lr=0.1, momentum=0.9, weight_decay=0.01)
  # d = g + wd p = [0.51, 0.98]; buf = 0.9 buf + d = [0.69, 0.98]; p -= 0.1 buf
  np.testing.assert_allclose(new_buf["w"], [0.69, 0.98], rtol=1e-6)
  np.testing.assert_allclose(new_p["w"], [1.0 - 0.069, -2.0 - 0.098], rtol=1e-6)


def test_train_step_is_sgd_on_cross_entropy_with_coupled_decay():
  s = ev.EvalSettings.for_protocol("dm", strategy="none", weight_decay=0.1, momentum=0.5)
  net = _net(TinyMLP(), (6, 6, 1))
  x, y = _random_data(8)
  state = ev.init_state(net, jax.random.key(0))
  state["momentum"] = jax.tree.map(lambda p: 0.01 * jnp.ones_like(p), state["params"])
  lr = 0.05
  out = ev.train_step(net, s, state, x, y, jax.random.key(1), lr)

  def loss(params):
    logits = TinyMLP().apply({"params": params}, x)
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(8), y])

  g = jax.grad(loss)(state["params"])
  want_buf = jax.tree.map(lambda b, gg, p: 0.5 * b + gg + 0.1 * p, state["momentum"], g,
                          state["params"])
  want = jax.tree.map(lambda p, b: p - lr * b, state["params"], want_buf)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7),
               out["params"], want)


# ----------------------------------------------------------------------------- CutMix


def test_cutmix_box_matches_idc_rand_bbox():
  # lam 0.75 -> cut ratio 0.5 -> cut 4 on 8x8; centre (4, 2): rows [2, 6), cols [0, 4)
  box = [int(v) for v in ev.cutmix_box((8, 8), 0.75, 4, 2)]
  assert box == [2, 0, 6, 4]
  # clipped at the border: centre row 7 -> rows [5, 8)
  assert [int(v) for v in ev.cutmix_box((8, 8), 0.75, 7, 7)] == [5, 5, 8, 8]
  # non-square: H=8, W=4, lam=0 -> full-size cut, centre (0, 0): rows [0, 4), cols [0, 2)
  assert [int(v) for v in ev.cutmix_box((8, 4), 0.0, 0, 0)] == [0, 0, 4, 2]


def test_paste_box_area_and_pixels():
  x = jnp.stack([jnp.full((8, 8, 2), float(i)) for i in range(3)])
  partner = jnp.array([2, 0, 1])
  mixed, ratio = ev.paste_box(x, partner, (2, 0, 6, 4))
  assert float(ratio) == pytest.approx(1 - 16 / 64)
  m = np.asarray(mixed)
  for i in range(3):
    inside = m[i, 2:6, 0:4]
    assert np.all(inside == float(partner[i]))
    outside = m[i].copy()
    outside[2:6, 0:4] = float(i)
    assert np.all(outside == float(i))
    assert (m[i] != float(i)).sum() == 16 * 2


def test_mixed_label_loss_equals_soft_label_cross_entropy():
  rs = np.random.RandomState(0)
  logits = jnp.asarray(rs.randn(5, 4), jnp.float32)
  y = jnp.array([0, 1, 2, 3, 0])
  yb = jnp.array([1, 1, 0, 2, 3])
  r = 0.7
  got = r * ev.cross_entropy(logits, y) + (1 - r) * ev.cross_entropy(logits, yb)
  soft = r * jax.nn.one_hot(y, 4) + (1 - r) * jax.nn.one_hot(yb, 4)
  want = -jnp.mean(jnp.sum(soft * jax.nn.log_softmax(logits), -1))
  assert float(got) == pytest.approx(float(want), rel=1e-6)


def test_cutmix_probability_and_partner_labels():
  x = jnp.arange(4 * 8 * 8, dtype=jnp.float32).reshape(4, 8, 8, 1)
  y = jnp.array([0, 1, 2, 3])
  for s in range(5):
    xo, yp, r = ev.cutmix(jax.random.key(s), x, y, mix_p=0.0, beta=1.0)
    assert float(r) == 1.0
    np.testing.assert_array_equal(xo, x)
  mixed_any = False
  for s in range(10):
    xo, yp, r = ev.cutmix(jax.random.key(s), x, y, mix_p=1.0, beta=1.0)
    changed = np.asarray(xo != x).reshape(4, -1).sum(1)
    assert np.all(changed == np.round((1 - float(r)) * 64) * (yp != y))
    assert sorted(np.asarray(yp).tolist()) == [0, 1, 2, 3]
    mixed_any |= float(r) < 1.0
  assert mixed_any


# ----------------------------------------------------------------------------- N nets


@pytest.mark.slow
def test_vmapped_nets_equal_separate_runs():
  s = ev.EvalSettings.for_protocol("dm", epochs=2, batch_size=16, num_nets=3,
                                   strategy="crop_flip")
  net = _net(TinyMLP(), (6, 6, 1))
  x, y = _random_data()            # 40 images: passes of 2 full batches and one of 8
  xt, yt = _random_data(50, seed=1)
  together = ev.train_and_test(net, x, y, xt, yt, settings=s, seed=7, return_states=True)
  assert together["devices"] == 3          # 8 fake CPU devices: one net per device
  params = together["states"]["params"]
  for i in range(3):
    alone = ev.train_and_test(net, x, y, xt, yt, settings=s, seed=7, net_ids=[i],
                              return_states=True)
    assert alone["devices"] == 1
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b[0], rtol=1e-5, atol=1e-6),
                 params, alone["states"]["params"])
    assert alone["checkpoint_accuracies"][-1][0] == pytest.approx(
        together["checkpoint_accuracies"][-1][i], abs=1e-9)
  # every execution strategy trains the same networks
  for loop, vectorize, devices in (("device", "vmap", None), ("host", "map", 1)):
    other = ev.train_and_test(net, x, y, xt, yt, settings=s, seed=7, vectorize=vectorize,
                              loop=loop, num_devices=devices, return_states=True)
    assert (other["loop"], other["vectorize"]) == (loop, vectorize)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 params, other["states"]["params"])
  # nets with different seeds differ
  k = params["Dense_0"]["kernel"]
  assert not np.allclose(k[0], k[1]) and not np.allclose(k[1], k[2])


@pytest.mark.slow
def test_batchnorm_nets_keep_and_use_running_stats():
  s = ev.EvalSettings.for_protocol("idc", epochs=2, batch_size=16, num_nets=2, strategy="none",
                                   eval_every_epochs=1)
  net = _net(TinyBN(), (6, 6, 1))
  x, y = _random_data()
  xt, yt = _random_data(30, seed=2)
  out = ev.train_and_test(net, x, y, xt, yt, settings=s, seed=0, num_devices=1,
                          return_states=True)
  stats = out["states"]["batch_stats"]["BatchNorm_0"]
  assert not np.allclose(stats["mean"], 0.0)     # updated in training
  assert len(out["checkpoint_accuracies"]) == 2


@pytest.mark.slow
def test_per_net_training_sets():
  s = ev.EvalSettings.for_protocol("dm", epochs=1, batch_size=16, num_nets=2, strategy="none")
  net = _net(TinyMLP(), (6, 6, 1))
  x, y = _random_data()
  xt, yt = _random_data(20, seed=3)
  both = ev.train_and_test(net, np.stack([x, x + 1.0]), np.stack([y, y]), xt, yt, settings=s,
                           seed=0, num_devices=1, return_states=True)
  first = ev.train_and_test(net, x, y, xt, yt, settings=s, seed=0, net_ids=[0],
                            num_devices=1, return_states=True)
  second = ev.train_and_test(net, x + 1.0, y, xt, yt, settings=s, seed=0, net_ids=[1],
                             num_devices=1, return_states=True)
  for i, single in enumerate((first, second)):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b[0], rtol=1e-5, atol=1e-6),
                 both["states"]["params"], single["states"]["params"])


@pytest.mark.parametrize("loop", ["host", "device"])
def test_progress_lines_count_passes(loop):
  """Long evaluations report progress (passes done, elapsed, ETA) as they go."""
  s = ev.EvalSettings.for_protocol("dm", epochs=2, batch_size=16, num_nets=1, strategy="none",
                                   eval_every_epochs=1)
  net = _net(TinyMLP(), (6, 6, 1))
  x, y = _random_data()
  lines = []
  ev.train_and_test(net, x, y, x[:8], y[:8], settings=s, seed=0, num_devices=1, loop=loop,
                    progress=lines.append, progress_every_s=0.0)
  done = [int(line.split()[1].split("/")[0]) for line in lines]
  assert all(line.split()[1].endswith(f"/{s.passes}") and "ETA" in line for line in lines)
  assert done == sorted(done) and done[-1] == s.passes == 3
  if loop == "host":
    assert done[:3] == [1, 2, 3]


@pytest.mark.slow
def test_training_on_real_digits_beats_chance_by_far():
  from sklearn.datasets import load_digits
  d = load_digits()
  x = ((d.images / 16.0 - 0.3052) / 0.3760)[..., None].astype(np.float32)
  y = d.target.astype(np.int32)
  # split: first 1200 images train, the remaining 597 test
  s = ev.EvalSettings.for_protocol("dm", epochs=40, batch_size=128, num_nets=2, lr=0.05,
                                   strategy="none")
  res = ev.evaluate_arrays(x[:1200], y[:1200], x[1200:], y[1200:], settings=s,
                           num_classes=10, seed=0, net=_net(TinyMLP(hidden=64), (8, 8, 1)),
                           model="tinymlp")
  assert res["num_nets"] == 2 and len(res["accuracies"]) == 2
  assert res["mean"] > 85.0, res      # chance is 10 %


def test_evaluate_arrays_shape_errors():
  s = ev.EvalSettings.for_protocol("dm", epochs=1, num_nets=2)
  x, y = _random_data()
  with pytest.raises(DataError, match="differ in shape"):
    ev.evaluate_arrays(x, y, x[:, :4], y, settings=s, num_classes=10, seed=0)
  with pytest.raises(DataError, match="labels outside"):
    ev.evaluate_arrays(x, y + 5, x, y, settings=s, num_classes=10, seed=0)
  with pytest.raises(DataError, match="num_nets=2"):
    ev.evaluate_arrays(np.stack([x] * 3), np.stack([y] * 3), x, y, settings=s,
                       num_classes=10, seed=0)


# ----------------------------------------------------------------------------- files / CLI


class _Info:
  name = "digits"
  num_classes = 10
  image_shape = (8, 8, 1)
  mean = (0.3052,)
  std = (0.3760,)


def _loader(split):
  rs = np.random.RandomState(0 if split == "train" else 1)
  n = 200 if split == "train" else 60
  return rs.randint(0, 256, (n, 8, 8, 1)).astype(np.uint8), np.arange(n) % 10


def _config(**eval_over):
  """The full config schema (what condensation reads too), with a tiny eval block."""
  c = load_experiment("quickstart.py:method=dm,ipc=2")
  c.eval.update(dict(model="mlp", models=(), num_nets=2, epochs=1, batch_size=64, every=0))
  c.eval.update(eval_over)
  return c


def _write_npz(path, n_per_class=2, shape=(8, 8, 1), classes=10, **extra):
  x = np.random.RandomState(0).randn(n_per_class * classes, *shape).astype(np.float32)
  y = np.repeat(np.arange(classes), n_per_class).astype(np.int32)
  arrays = dict(x=x, y=y, mean=np.array([0.3052], np.float32),
                std=np.array([0.3760], np.float32), factor=np.array(1), space="normalized",
                method="dm", dataset="digits")
  arrays.update(extra)
  np.savez(path, **arrays)
  return path


def test_holdout_labels_name_the_holdout_not_the_test_set():
  run = {"checkpoint_accuracies": [[58.0, 61.5], [60.0, 60.0]], "checkpoint_passes": [1, 2],
         "wall_seconds": 3.0, "devices": 1, "loop": "host", "vectorize": "vmap"}
  settings = ev.EvalSettings.for_protocol("idc")
  res = ev.summarize(run, settings, "convnet", 20)
  assert res["measured_on"] == "test"
  assert res["best_selection"] == ("max over test checkpoints after passes [1, 2]: selected "
                                   "on the test set")
  assert "(selected on test set)" in ev.summary_line(res)
  marked = ev.summarize(run, settings, "convnet", 20, ev.test_split_name(1000))
  line = ev.summary_line(marked)
  assert "test" not in line, line
  assert "(selected on train holdout (1000/class))" in line
  assert "[measured on train holdout (1000/class)]" in line
  assert marked["best_selection"] == ("max over checkpoints after passes [1, 2]: selected on "
                                      "train holdout (1000/class)")
  assert "selected on train holdout" in ev.pool_table({"convnet": marked})
  assert (marked["mean"], marked["best_mean"]) == (res["mean"], res["best_mean"])


def test_holdout_measures_on_held_out_train_images(tmp_path, monkeypatch):
  """dataset.holdout swaps the test split for the last n train images of each class, and the
  results file says so; the default loader (real sklearn digits) does the split."""
  npz = _write_npz(tmp_path / "synthetic.npz")
  seen = {}
  real_pool = ev.evaluate_pool

  def spy(x_train, y_train, x_test, y_test, **kw):
    seen["x_test"], seen["y_test"] = x_test, y_test
    return real_pool(x_train, y_train, x_test, y_test, **kw)
  monkeypatch.setattr(ev.pool, "evaluate_pool", spy)
  c = _config()
  c.dataset.holdout = 15
  lines = []
  rec = ev.run(c, workdir=tmp_path / "out", synthetic=str(npz), log=lines.append)
  from jaxcond.data import load_split
  x, y = load_split("digits", "train")
  held = np.concatenate([np.flatnonzero(y == k)[-15:] for k in range(10)])
  held.sort()
  assert np.array_equal(seen["y_test"], y[held])
  assert np.allclose(seen["x_test"], synthetic_io.normalize_uint8(x[held], _Info.mean, _Info.std))
  assert rec["measured_on"] == "train holdout (15/class)" and rec["num_test"] == 150
  assert "[measured on train holdout (15/class)]" in lines[-1]
  plain = ev.run(_config(), workdir=tmp_path / "plain", synthetic=str(npz), log=lines.append)
  assert plain["measured_on"] == "test" and plain["num_test"] == 355


def test_results_json_format_synthetic(tmp_path):
  npz = _write_npz(tmp_path / "synthetic.npz")
  lines = []
  rec = ev.run(_config(), workdir=tmp_path / "out", synthetic=str(npz), loader=_loader,
               info=_Info, log=lines.append)
  data = json.loads((tmp_path / "out" / "results.json").read_text())
  for key in ("accuracies", "mean", "std", "protocol", "model", "num_nets", "config",
              "versions", "source", "settings"):
    assert key in data, key
  assert len(data["accuracies"]) == 2 and data["num_nets"] == 2
  assert data["mean"] == pytest.approx(np.mean(data["accuracies"]))
  assert data["std"] == pytest.approx(np.std(data["accuracies"]))
  assert data["protocol"] == "dm" and data["model"] == "mlp"
  assert data["source"]["kind"] == "synthetic" and data["source"]["path"] == str(npz)
  assert data["versions"]["jax"] == jax.__version__
  assert data["config"]["eval"]["num_nets"] == 2
  assert data["settings"]["passes"] == 2
  assert rec["mean"] == data["mean"]
  assert lines[-1].startswith("evaluate: dm mlp x2")


@pytest.mark.slow
def test_idc_uses_decoded_set_and_reports_test_selected_best(tmp_path):
  xd = np.random.RandomState(1).randn(80, 8, 8, 1).astype(np.float32)
  yd = np.repeat(np.arange(10), 8).astype(np.int32)
  npz = _write_npz(tmp_path / "s.npz", x_decoded=xd, y_decoded=yd, factor=np.array(2))
  rec = ev.run(_config(protocol="idc", epochs=2, eval_every_epochs=1, mix_p=0.5),
               workdir=tmp_path, synthetic=str(npz), loader=_loader, info=_Info,
               log=lambda s: None)
  assert rec["source"]["decoded"] is True
  assert rec["results"]["mlp"]["train_images_per_net"] == 80
  assert rec["protocol"] == "idc"
  assert "selected on the test set" in rec["best_selection"]
  assert len(rec["best_accuracies"]) == 2
  assert all(b >= a for a, b in zip(rec["accuracies"], rec["best_accuracies"]))


def test_random_baseline_each_net_has_its_own_subset(tmp_path):
  rec = ev.run(_config(), workdir=tmp_path, baseline="random", loader=_loader, info=_Info,
               log=lambda s: None)
  subsets = rec["source"]["indices"]
  assert len(subsets) == 2 and subsets[0] != subsets[1]
  labels = _loader("train")[1]
  for s in subsets:
    np.testing.assert_array_equal(labels[s], np.repeat(np.arange(10), 2))
  assert rec["source"]["baseline"] == "random"


@pytest.mark.slow
def test_herding_baseline_and_model_pool(tmp_path):
  rec = ev.run(_config(), workdir=tmp_path, baseline="herding", models="mlp,convnetd1",
               feature_net="mlp", loader=_loader, info=_Info, log=lambda s: None)
  assert set(rec["results"]) == {"mlp", "convnetd1"}
  table = (tmp_path / "cross_arch.md").read_text()
  assert "| mlp |" in table and "| convnetd1 |" in table
  assert len(rec["source"]["indices"]) == 20


def _cli(tmp_path, *args):
  cfg = tmp_path / "cfg.py"
  cfg.write_text(textwrap.dedent("""
      from jaxcond import configs
      def get_config(arg=None):
        c = configs.method_config("digits", method="dm", ipc=2)
        c.eval.update(dict(model="mlp", num_nets=2, epochs=1))
        return c
      """))
  return ev.main(["evaluate", f"--config={cfg}", f"--workdir={tmp_path / 'out'}", *args])


def test_cli_errors_are_one_line_exit_2(tmp_path, capsys):
  cases = [
      ([f"--synthetic={tmp_path / 'missing.npz'}"], "synthetic set not found"),
      ([], "exactly one of"),
      ([f"--synthetic={_write_npz(tmp_path / 'a.npz', shape=(28, 28, 1))}"],
       "expected (8, 8, 1)"),
      ([f"--synthetic={_write_npz(tmp_path / 'b.npz', classes=12)}"], "outside the dataset"),
      ([f"--synthetic={_write_npz(tmp_path / 'c.npz', classes=5)}"], "no images for class"),
      ([f"--synthetic={_write_npz(tmp_path / 'd.npz', mean=np.array([0.5]))}"],
       "normalisation mean"),
      ([f"--synthetic={_write_npz(tmp_path / 'e.npz')}", "--baseline=random"], "exactly one"),
      (["--baseline=kmeans"], "baseline"),
      (["--baseline=random", "--models=convnet,resnet99"], "unknown model 'resnet99'"),
      ([f"--synthetic={_write_npz(tmp_path / 'f.npz')}", "--config.eval.num_nets=0"],
       "num_nets"),
  ]
  for args, message in cases:
    assert _cli(tmp_path, *args) == 2, args
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error:") and message in err, (message, err)
  bad = tmp_path / "bad.npz"
  bad.write_bytes(b"not a zip")
  assert _cli(tmp_path, f"--synthetic={bad}") == 2
  assert "not a .npz synthetic set" in capsys.readouterr().err


# -------------------------------------------- device-loop progress, memory plan, CLI file checks


def test_accelerator_policy_prints_progress_during_training():
  """The device loop (what accelerators run) reports passes as it goes, in the same style
  as the host loop, not only at the end (forced accelerator policy on CPU, tiny sizes)."""
  from jaxcond import backend
  s = ev.EvalSettings.for_protocol("dm", epochs=9, batch_size=16, num_nets=1, strategy="none")
  net = _net(TinyMLP(), (6, 6, 1))
  x, y = _random_data()
  lines = {}
  for policy in ("accelerator", "cpu"):
    lines[policy] = []
    with backend.force(policy):
      out = ev.train_and_test(net, x, y, x[:8], y[:8], settings=s, seed=0, num_devices=1,
                              progress=lines[policy].append, progress_every_s=0.0)
    assert out["loop"] == ("device" if policy == "accelerator" else "host")
  done = [int(line.split()[1].split("/")[0]) for line in lines["accelerator"]]
  assert len(done) >= 5 and done == sorted(done) and done[-1] == s.passes == 10
  for line in lines["accelerator"] + lines["cpu"]:
    assert line.startswith("pass ") and "ETA" in line and "\r" not in line


def test_memory_plan_is_bounded_by_batching():
  """The device-loop program's temporaries do not grow with the training set (only the
  set itself, an argument, does): 10x the images, the same batch (no partial batch)."""
  from jaxcond.evaluate import memory
  s = ev.EvalSettings.for_protocol("dm", model="convnetd1", batch_size=32, strategy="none")
  small, big = (memory.plan(s, num_classes=10, image_shape=(8, 8, 1), num_train=n)
                for n in (128, 1280))
  assert big["training_set_bytes"] == 10 * small["training_set_bytes"]
  assert big["argument_bytes"] - small["argument_bytes"] >= 1152 * 8 * 8 * 4
  # temporaries: the same batch work; only the pass's int32 shuffle indices grow
  assert big["temp_bytes"] - small["temp_bytes"] <= 16 * 1152 + 4096, (small, big)
  assert small["temp_bytes"] > 0 and small["state_bytes"] > 0


def test_cli_checks_the_synthetic_file_before_loading_data(tmp_path, monkeypatch, capsys):
  """Not .npz, truncated, or made for another dataset: one line naming the file, exit 2,
  and no dataset is read first."""
  from jaxcond import data
  def no_data(*a, **k):
    raise AssertionError("the dataset was loaded before the synthetic file was checked")
  monkeypatch.setattr(data, "load_split", no_data)
  text = tmp_path / "notes.txt"
  text.write_text("hello")
  good = _write_npz(tmp_path / "good.npz")
  cut = tmp_path / "cut.npz"
  cut.write_bytes(good.read_bytes()[:200])
  other = _write_npz(tmp_path / "other.npz", dataset="mnist")
  for path, message in ((text, "not a .npz"), (cut, "truncated"),
                        (other, "made for dataset 'mnist'")):
    assert _cli(tmp_path, f"--synthetic={path}") == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and str(path) in err and message in err, err


def test_smoke_evaluate_program_on_digits(tmp_path, capsys):
  """End to end through the command line (real digits, tiny settings)."""
  npz = _write_npz(tmp_path / "synthetic.npz")
  assert _cli(tmp_path, f"--synthetic={npz}") == 0
  out = capsys.readouterr().out
  data = json.loads((tmp_path / "out" / "results.json").read_text())
  assert data["model"] == "mlp" and data["num_test"] == 355 and len(data["accuracies"]) == 2
  assert data["command"].startswith("python -m jaxcond.evaluate --config=")
  assert "mlp: training 2 network(s), 2 passes over 20 images (dm protocol)" in out
  assert out.strip().splitlines()[-1].startswith("evaluate: dm mlp x2 on synthetic.npz")


def test_entry_points_refuse_raw_pixels_in_one_line():
  """uint8 (or [0, 1] / [0, 255] float) images train without an error but score far lower
  (on digits 62-79 % instead of 83-86 %): evaluate_set / evaluate_arrays / train_and_test
  refuse them with one line before training."""
  from jaxcond.errors import DataError
  rs = np.random.default_rng(0)
  u8 = rs.integers(0, 256, (20, 8, 8, 1), np.uint8)
  y = np.repeat(np.arange(10, dtype=np.int32), 2)
  settings = ev.EvalSettings.for_protocol("dm", dataset="digits", model="convnetd2",
                                          num_nets=1, epochs=1)
  calls = {
      "set": lambda x, xt: ev.evaluate_set(x, y, xt, y, settings=settings, num_classes=10),
      "arrays": lambda x, xt: ev.evaluate_arrays(x, y, xt, y, settings=settings,
                                                 num_classes=10, seed=0),
      "train_and_test": lambda x, xt: ev.train_and_test(
          ev.registry_net("convnetd2", num_classes=10, image_shape=(8, 8, 1)), x, y, xt, y,
          settings=settings, seed=0)}
  good = (u8.astype(np.float32) / 255 - 0.3) / 0.4
  for name, call in calls.items():
    for x, xt, what in ((u8, good, "training"), (good, u8.astype(np.float32), "test"),
                        (good, u8.astype(np.float32) / 255, "test")):
      with pytest.raises(DataError, match=f"^evaluate: {what} images: ") as err:
        call(x, xt)
      assert len(str(err.value).splitlines()) == 1, name
