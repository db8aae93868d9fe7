"""Condensation configs: one module per idea, every public name re-exported here.

  schema.py    the fields, one row each (`FIELDS`: default, domain, meaning), base_config,
               set_field, the trajectory hash
  methods.py   DM / M3D / DDM / NCFM paper defaults, condensation and evaluation protocol
  validate.py  every check: validate(c, *, image_shape=None, counts=None, class_names=None)
  build.py     arg strings, method_config / override, values_table
  settings.py  a validated config -> frozen DataSettings, RunSettings, steps.StepSettings
  checks.py    one-line field checks and the domains the rows name

ConfigDicts stop at the entry points: `experiments/<dataset>.py:get_config(arg)` builds
one, a program validates it here before any data is touched or anything compiles and turns
it into frozen settings (`step_settings`, `evaluate.EvalSettings.from_config`).
Use as `from jaxcond import configs; configs.method_config(...)`.
"""
from jaxcond.configs.build import (TABLE_IPCS, literal, method_config, override, parse_arg,
                                   pop_arg, stale_defaults, values_table)
from jaxcond.configs.checks import (AUG_OPS, check_bool, check_choice, check_float,
                                    check_int, check_str, check_strategy, suggest)
from jaxcond.configs.methods import (DDM, DIGIT_DATASETS, DM, EVAL_PROTOCOL_DEFAULTS,
                                     EVAL_PROTOCOLS, FULL_STRATEGY, M3D, METHODS, NCFM,
                                     NO_FLIP_STRATEGY, apply_method_defaults,
                                     eval_protocol_defaults, m3d_default_lr,
                                     method_defaults)
from jaxcond.configs.schema import (ESTIMATORS, FIELDS, INITS, KERNELS, METHOD,
                                    NON_TRAJECTORY_FIELDS, OPTIMIZERS, POLICIES, SPACES,
                                    STEP_MODES, STYLE_MODES, STYLE_TAPS, Field, base_config,
                                    config_hash, differing_fields, flat, set_field,
                                    to_jsonable, trajectory_dict)
from jaxcond.configs.settings import (DataSettings, RunSettings, dataset_record,
                                      model_overrides, model_record, step_settings)
from jaxcond.configs.validate import (uses_batch_norm, validate, validate_counts,
                                      validate_known_counts,
                                      validate_shapes, validate_static)
