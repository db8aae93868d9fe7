"""Scoring a training set: fresh networks of every architecture in the pool, trained and
tested under one protocol. `evaluate_set` is the function both `condense` (in-loop and
final evaluation) and `python -m jaxcond.evaluate` call.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from jaxcond import synthetic_io
from jaxcond.errors import DataError
from jaxcond.evaluate import results as results_lib
from jaxcond.evaluate import plan as plan_lib
from jaxcond.evaluate.execution import Layout, train_and_test
from jaxcond.evaluate.protocols import EvalSettings
from jaxcond.evaluate.train import NetFns, registry_net


def _check_arrays(x_train, y_train, x_test, y_test, num_classes: int, num_nets: int):
  x_train, y_train = np.asarray(x_train), np.asarray(y_train)
  x_test, y_test = np.asarray(x_test), np.asarray(y_test)
  per_net = x_train.ndim == 5
  if x_train.ndim not in (4, 5) or x_test.ndim != 4:
    raise DataError(f"evaluate: images must be [N, H, W, ch] (train may be [nets, N, H, W, "
                    f"ch]), got train {x_train.shape} and test {x_test.shape}")
  if x_train.shape[-3:] != x_test.shape[-3:]:
    raise DataError(f"evaluate: train images {x_train.shape[-3:]} and test images "
                    f"{x_test.shape[-3:]} differ in shape")
  if y_train.shape != x_train.shape[:-3] or y_test.shape != x_test.shape[:1]:
    raise DataError(f"evaluate: labels {y_train.shape}/{y_test.shape} do not match images "
                    f"{x_train.shape[:-3]}/{x_test.shape[:1]}")
  if per_net and x_train.shape[0] != num_nets:
    raise DataError(f"evaluate: per-network training sets for {x_train.shape[0]} networks, "
                    f"but num_nets={num_nets}")
  for name, y in (("train", y_train), ("test", y_test)):
    if y.size and (y.min() < 0 or y.max() >= num_classes):
      raise DataError(f"evaluate: {name} labels outside [0, {num_classes})")
  if x_train.shape[-4] == 0 or x_test.shape[0] == 0:
    raise DataError("evaluate: empty training or test set")
  synthetic_io.check_normalized(x_train, "evaluate: training images")
  synthetic_io.check_normalized(x_test, "evaluate: test images")


def evaluate_arrays(x_train, y_train, x_test, y_test, *, settings: EvalSettings,
                    num_classes: int, seed: int, model: str | None = None,
                    net: NetFns | None = None, test_batch_size: int = 500,
                    vectorize: str | None = None, loop: str | None = None,
                    layout: Layout | None = None, data_axis: int = 0, remat: str = "auto",
                    memory_budget_gb: float = 0.0, num_devices: int | None = None,
                    progress: Callable[[str], None] | None = None,
                    measured_on: str = "test") -> dict:
  """Trains settings.num_nets fresh `model` nets (default settings.model) on (x_train,
  y_train) under `settings.protocol` and tests them on (x_test, y_test).

  Images are float32 NHWC, normalised, (pixels/255 − mean)/std (`jaxcond.load(...).x`,
  `synthetic_io.normalize_uint8`): raw uint8 or [0, 1] / [0, 255] float pixels are refused
  with one line (they train without an error but score far lower). Labels int32.
  x_train may carry a leading network axis
  (one training set per network). The devices are used as `layout` says, else as the memory
  plan chooses (`evaluate.plan.choose`: `data_axis` 0 = its choice, `remat` auto | on | off,
  `memory_budget_gb` 0 = the device's limit). Returns dict(accuracies, mean, std, protocol,
  model, num_nets, ...; idc / ncfm add best_accuracies, best_mean, best_std, best_selection).
  """
  _check_arrays(x_train, y_train, x_test, y_test, num_classes, settings.num_nets)
  model = (model or settings.model).lower()
  image_shape = tuple(int(s) for s in np.shape(x_test)[1:])
  if net is None:
    net = registry_net(model, num_classes=num_classes, image_shape=image_shape)
  if layout is None:
    layout, vectorize_plan = plan_lib.choose(
        settings, model=model, net=net, num_classes=num_classes, image_shape=image_shape,
        num_train=int(np.shape(x_train)[-4]), num_test=int(np.shape(x_test)[0]),
        num_nets=settings.num_nets, per_net_data=np.ndim(x_train) == 5,
        num_devices=num_devices, memory_budget_gb=memory_budget_gb, data_axis=data_axis,
        remat=remat, vectorize=vectorize, test_batch_size=test_batch_size,
        log=progress)
    vectorize = vectorize or vectorize_plan
  run = train_and_test(net, x_train, y_train, x_test, y_test, settings=settings, seed=seed,
                       test_batch_size=test_batch_size, vectorize=vectorize, loop=loop,
                       layout=layout, progress=progress)
  return results_lib.summarize(run, settings, model, int(np.shape(x_train)[-4]), measured_on)


def evaluate_pool(x_train, y_train, x_test, y_test, *, settings: EvalSettings,
                  num_classes: int, seed: int, log: Callable | None = None,
                  **kwargs) -> dict[str, dict]:
  """evaluate_arrays for every architecture of settings.pool (same seeds); {model: result}.
  `log` hears progress lines and, for a pool of several models, each model's summary."""
  out = {}
  for name in settings.pool:
    if log:
      log(f"{name}: training {settings.num_nets} network(s), {settings.passes} passes over "
          f"{int(np.shape(x_train)[-4])} images ({settings.protocol} protocol)")
    out[name] = evaluate_arrays(
        x_train, y_train, x_test, y_test, settings=settings, num_classes=num_classes,
        seed=seed, model=name, progress=(lambda s, n=name: log(f"{n}: {s}")) if log else None,
        **kwargs)
    if log and len(settings.pool) > 1:
      log(results_lib.summary_line(out[name]))
  return out


def evaluate_set(x_train, y_train, x_test, y_test, *, settings: EvalSettings,
                 num_classes: int, measured_on: str = "test", log: Callable | None = None,
                 **kwargs) -> tuple[dict, dict[str, dict]]:
  """Scores one training set over the pool: (record, {model: result}); the record has the
  schema of `results.record` (condense writes it to eval.jsonl, evaluate to results.json).
  Images: normalised float NHWC, as `evaluate_arrays` says (raw pixels are refused)."""
  results = evaluate_pool(x_train, y_train, x_test, y_test, settings=settings,
                          num_classes=num_classes, seed=settings.seed, log=log,
                          measured_on=measured_on, **kwargs)
  return results_lib.record(results, settings), results
