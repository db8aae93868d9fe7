"""NCFM's evaluation protocol, `eval.protocol=ncfm` (arXiv 2502.20653 and its released
code): AdamW, the ×0.5 schedule, 2000 epochs, best of the test checkpoints, labelled."""
import json

import jax.numpy as jnp
import numpy as np
import pytest

from jaxcond import configs
from jaxcond import evaluate as ev
from jaxcond.evaluate import program

from conftest import load_experiment
from evalnets import TinyMLP, net_fns


def _net(shape=(6, 6, 1)):
  return net_fns(TinyMLP(hidden=16), shape)


def test_ncfm_settings_and_schedule():
  s = ev.EvalSettings.for_protocol("ncfm")
  assert (s.epochs, s.batch_size, s.lr, s.weight_decay, s.momentum) == (2000, 128, 1e-3,
                                                                         0.01, 0.9)
  assert (s.mix_p, s.beta, s.strategy) == (0.5, 1.0, "color_crop_flip_scale_rotate")
  assert s.optimizer == "adamw" and s.augment_policy == "idc" and s.reports_best
  assert s.passes == 2000 and s.milestones == (400, 800, 1200, 1600) and s.gamma == 0.5
  # torch MultiStepLR stepped after each epoch: epoch index 400 (0-based) is the first at 1/2
  assert [s.lr_at(e) for e in (0, 399, 400, 799, 800, 1600, 1999)] == pytest.approx(
      [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 6.25e-5, 6.25e-5])
  assert float(s.lr_at(jnp.int32(1200))) == pytest.approx(1.25e-4)
  assert not any(s.resets_momentum_at(e) for e in (0, 400, 1001))
  assert s.checkpoint_passes() == tuple(range(100, 2001, 100))
  assert s.to_dict()["optimizer"] == "adamw"
  assert ev.EvalSettings.for_protocol("dm").optimizer == "sgd"
  assert "ncfm" in configs.EVAL_PROTOCOLS
  assert ev.EvalSettings.for_protocol("ncfm", dataset="mnist").strategy == \
      "color_crop_scale_rotate"      # no flip for digits, as the other protocols


def test_adamw_is_torch_adamw():
  """Two `adamw_update` steps against torch.optim.AdamW written out (decoupled decay
  p ← p − lr·wd·p, bias-corrected moments, eps outside the square root)."""
  s = ev.EvalSettings.for_protocol("ncfm")
  p0 = {"w": jnp.array([0.5, -1.0, 2.0])}
  grads = [{"w": jnp.array([0.1, -0.2, 0.3])}, {"w": jnp.array([-0.05, 0.4, 0.0])}]
  lrs = [1e-3, 5e-4]
  state = ev.init_state(ev.NetFns(lambda k: {"params": p0}, None), None, optimizer="adamw")
  params, opt = state["params"], state["opt"]
  p, m, v = np.array([0.5, -1.0, 2.0]), np.zeros(3), np.zeros(3)
  for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
    params, opt = ev.adamw_update(s, params, opt, g, lr=lr)
    g = np.asarray(g["w"], np.float64)
    p = p * (1 - lr * 0.01)
    m = 0.9 * m + 0.1 * g
    v = 0.999 * v + 0.001 * g * g
    p = p - lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    np.testing.assert_allclose(np.asarray(params["w"]), p, rtol=1e-6, atol=1e-9)


def test_ncfm_training_reports_the_best_checkpoint():
  """A tiny ncfm run: AdamW state in the networks, tests every `eval_every_epochs`, the
  best of them reported and labelled as selected on the test set."""
  s = ev.EvalSettings.for_protocol("ncfm", epochs=4, batch_size=16, num_nets=2,
                                   eval_every_epochs=2, strategy="crop_flip")
  rs = np.random.RandomState(0)
  x = rs.randn(40, 6, 6, 1).astype(np.float32)
  y = (np.arange(40) % 10).astype(np.int32)
  out = ev.train_and_test(_net(), x, y, x[:20], y[:20], settings=s, seed=0, num_devices=1,
                          return_states=True)
  assert "opt" in out["states"] and "momentum" not in out["states"]
  assert out["checkpoint_passes"] == [2, 4]
  res = ev.summarize(out, s, "mlp", 40)
  assert res["protocol"] == "ncfm" and res["best_mean"] >= res["mean"] - 1e-9
  assert "selected on the test set" in res["best_selection"]
  assert "best" in ev.summary_line(res)


def test_config_protocol_and_the_protocol_flag(tmp_path):
  """`eval.protocol=ncfm` validates; `--protocol` moves a config's eval block to a
  protocol's reference values (how an ncfm set is also scored under dm), explicit
  `--config.eval.*` winning."""
  c = load_experiment("quickstart.py:method=dm,ipc=2,eval.protocol=ncfm")
  configs.validate(c)
  assert ev.EvalSettings.from_config(c).optimizer == "adamw"
  dm = ev.EvalSettings.from_config(load_experiment("quickstart.py:method=dm,ipc=2"))
  moved = program.protocol_settings(dm, "ncfm", "digits", {"epochs": 3})
  assert (moved.protocol, moved.epochs, moved.lr, moved.batch_size) == ("ncfm", 3, 1e-3, 128)
  assert (moved.model, moved.num_nets) == (dm.model, dm.num_nets)
  back = program.protocol_settings(moved, "dm", "digits")
  assert (back.lr, back.epochs, back.mix_p, back.strategy) == (
      0.01, 1000, 0.0, "color_crop_cutout_scale_rotate")
  x = np.random.RandomState(0).randn(20, 8, 8, 1).astype(np.float32)
  npz = tmp_path / "synthetic.npz"
  np.savez(npz, x=x, y=np.repeat(np.arange(10), 2).astype(np.int32),
           mean=np.array([0.3052], np.float32), std=np.array([0.3760], np.float32),
           factor=np.array(1), space="normalized", method="dm", dataset="digits")
  code = ev.main(["evaluate", "--config=experiments/quickstart.py:method=dm,ipc=2",
                  f"--workdir={tmp_path / 'out'}", f"--synthetic={npz}", "--protocol=ncfm",
                  "--config.eval.epochs=2", "--config.eval.eval_every_epochs=1",
                  "--config.eval.num_nets=1", "--config.eval.model=mlp"])
  assert code == 0
  rec = json.loads((tmp_path / "out" / "results.json").read_text())
  assert rec["protocol"] == "ncfm" and rec["settings"]["optimizer"] == "adamw"
  assert rec["settings"]["epochs"] == 2 and rec["settings"]["batch_size"] == 128
  assert "best_mean" in rec and "selected on the test set" in rec["best_selection"]
