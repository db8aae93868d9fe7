"""Train-from-scratch evaluation of a condensed (or coreset) training set (docs/evaluate.md).

One module per idea:
  protocols  `EvalSettings` (dm / idc / ncfm protocols, schedule), `EvalSettings.from_config`
  train      networks as pure functions, SGD / AdamW, cross-entropy, CutMix, steps and
             passes, rematerialised residual blocks
  execution  N networks together on a (nets, data) mesh: host loop (CPU) or one device
             program (accelerators), data parallel over devices and hosts
  plan       the memory plan (layout, vectorisation, remat under a budget) and FLOPs;
             `python -m jaxcond.evaluate --plan`
  pool       `evaluate_arrays`, `evaluate_pool`, `evaluate_set` (what condense also calls)
  results    summaries, the one record schema, summary lines, tables, results.json
  memory     the one-device training program's memory from shapes only (bounded by batching)
  program    `run(config, ...)` and the command line `python -m jaxcond.evaluate`

Everything other code uses is re-exported here: `from jaxcond import evaluate;
evaluate.EvalSettings`, `evaluate.evaluate_pool`, `evaluate.run`, ...
"""
from jaxcond.evaluate.execution import (DATA_AXIS, LOOPS, NET_AXIS, VECTORIZE, Layout,
                                        default_execution, default_layout, net_keys,
                                        net_layout, train_and_test)
from jaxcond.evaluate.plan import EvalPlan, plan_evaluation, run_plan
from jaxcond.evaluate.pool import evaluate_arrays, evaluate_pool, evaluate_set
from jaxcond.evaluate.program import PROGRAM, load_test_split, main, run
from jaxcond.evaluate.protocols import (DIGIT_DATASETS, DM_STRATEGY, IDC_STRATEGY, PROTOCOLS,
                                        EvalSettings, default_strategy, test_split_name)
from jaxcond.evaluate.results import (pool_table, record, summarize, summary_line, versions,
                                      write_results)
from jaxcond.evaluate.train import (NetFns, adamw_update, count_correct, cross_entropy,
                                    cutmix, cutmix_box, init_state, loss_and_grads, paste_box,
                                    registry_net, remat_blocks, remat_net, sgd_update,
                                    steps_per_pass, train_batch, train_pass, train_passes,
                                    train_step)
