"""Architecture search on a condensed proxy (`python -m jaxcond.nas`).

    python -m jaxcond.nas --config experiments/nas.py:runlocal --workdir runs/nas_local
    python -m jaxcond.nas --config experiments/nas.py:fashion_mnist --workdir runs/nas_fmnist
    python -m jaxcond.nas --config experiments/nas.py:cifar10 --workdir runs/nas_c10

Args: the setting (`cifar10` | `fashion_mnist` | `runlocal`), then optionally `ipc=<n>`
(proxy images per class). Override anything with `--config.<field>=value`, e.g.
`--config.nas.widths="(32,64)"`, `--config.methods.dm.steps=1000`.

Settings:
- `cifar10`: the papers' search (DC arXiv 2006.05929 §3.3 and DM arXiv 2110.04181 §5; the
  grid and epochs are from the DC paper's text as we read it, NOT checked against code):
  720 ConvNets = depth {1,2,3,4} x width {32,64,128,256} x
  act {sigmoid, relu, leakyrelu} x norm {none, batch, layer, instance, group} x pool {none,
  max, avg}; proxies of 50 images per class (DM condensed with its paper defaults, random),
  each trained 200 epochs; early stopping = the same number of SGD iterations on the whole
  set; target = 100 epochs on the whole set. CHOICES: 1 network per architecture and
  proxy, DM evaluation protocol (lr 0.01, halved schedule), DSA on the proxies, none on
  the whole set.
- `fashion_mnist`: a CPU-sized search on real 28x28 data (far below the papers' budget;
  not measured yet, too slow for the loaded CPU of docs/results.md): 32 ConvNets = depth {2,3} x width {8,16} x act
  {relu, sigmoid} x norm {instance, none} x pool {avg, max}; the "whole set" is a seeded
  200-per-class subset (2000 images), the test set a 50-per-class subset (500); proxies
  of 10 per class (DM condensed from the whole set, 200 steps, ConvNet-3 width 64,
  batch_real 64; random) trained 50 epochs with DSA; early = 1 epoch on the whole set;
  target = 8 epochs on the whole set, no augmentation.
- `digits`: the measurement of docs/results.md (a heavily shared 2-core CPU could not
  afford the `fashion_mnist` one; compilation dominates there, so the grid is the
  smallest that the issue allows): scikit-learn digits, the "whole set" a seeded
  128-per-class subset of the training split (1280 images: whole batches of 128, so one
  compiled step program), the whole test split (355); 24 ConvNets = depth {1,2,3} x width
  {16} x act {relu, sigmoid} x norm {instance, none} x pool {avg, max} (width fixed to
  fit the time); proxies dm and random of 10 per class (DM condensed from the whole set,
  100 steps, ConvNet-2 width 32) trained 50 epochs with DSA; target = the same 50 epochs
  with DSA on the whole set (batch 128; the same evaluation settings for every run, so
  the compiled init and test programs are shared: compilation dominates here). The
  `early` proxy is left out here (one more
  compilation per architecture); add it with `--config.nas.proxies="('dm','random','early')"`.
- `runlocal`: digits, 4 ConvNets (depth 1/2 x act relu/sigmoid, width 16), tiny budgets,
  for tests and a smoke run (< 5 min).
"""
import ml_collections

from jaxcond import configs
from jaxcond.errors import ConfigError


def get_config(arg=None):
  args = configs.parse_arg(arg)
  names = [k for k in ("cifar10", "fashion_mnist", "digits", "runlocal")
           if args.pop(k, False)]
  if len(names) != 1:
    raise ConfigError("config arg: name exactly one setting: cifar10 | fashion_mnist | "
                      f"digits | runlocal (got {arg!r})")
  setting = names[0]
  dataset = {"cifar10": "cifar10", "fashion_mnist": "fashion_mnist",
             "digits": "digits", "runlocal": "digits"}[setting]
  ipc = int(args.pop("ipc", {"cifar10": 50, "fashion_mnist": 10, "digits": 10,
                              "runlocal": 5}[setting]))
  if args:
    raise ConfigError(f"config arg: unknown key(s) {sorted(args)}")

  def cpu(c):
    c.model.width = 64 if setting == "fashion_mnist" else 32
    if setting in ("digits", "runlocal"):
      c.model.name = "convnetd2"
    c.batch_real = 64 if setting == "fashion_mnist" else 32
    c.steps = {"fashion_mnist": 200, "digits": 100, "runlocal": 30}[setting]
    c.log_every = 50
    c.real_chunk = 0
    c.syn_chunk = 0

  dm = configs.method_config(dataset, method="dm", ipc=ipc)
  if setting != "cifar10":
    cpu(dm)
  c = ml_collections.ConfigDict()
  c.setting = setting
  c.dataset = dm.dataset
  c.ipc = ipc
  c.seed = 0
  c.tensorboard = False       # True: event files in WORKDIR/tensorboard/ (jaxcond.tblog)
  c.model = dm.model              # the condensation net of the DM proxy
  c.eval = dm.eval                # protocol of every training run (epochs set per run)
  c.nas = ml_collections.ConfigDict()
  c.nas.proxies = ("dm", "random", "early")
  c.nas.num_nets = 1
  c.nas.whole_strategy = "none"
  c.nas.top_fraction = 0.05
  c.nas.shard = ""                # "i/n": train only archs[i::n] (parallel processes)
  if setting == "cifar10":
    c.nas.depths, c.nas.widths = (1, 2, 3, 4), (32, 64, 128, 256)
    c.nas.acts = ("sigmoid", "relu", "leakyrelu")
    c.nas.norms = ("none", "batch", "layer", "instance", "group")
    c.nas.pools = ("none", "max", "avg")
    c.nas.proxy_epochs, c.nas.whole_epochs = 200, 100
    c.nas.early_epochs = 1      # 200 iterations on 500 images/class ~ 1 epoch of 196 batches
    c.nas.train_per_class, c.nas.test_per_class = 0, 0
  elif setting == "fashion_mnist":
    c.nas.depths, c.nas.widths = (2, 3), (8, 16)
    c.nas.acts, c.nas.norms, c.nas.pools = ("relu", "sigmoid"), ("instance", "none"), \
        ("avg", "max")
    c.nas.proxy_epochs, c.nas.early_epochs, c.nas.whole_epochs = 50, 1, 8
    c.nas.train_per_class, c.nas.test_per_class = 200, 50
  elif setting == "digits":
    c.nas.depths, c.nas.widths = (1, 2, 3), (16,)
    c.nas.acts, c.nas.norms, c.nas.pools = ("relu", "sigmoid"), ("instance", "none"), \
        ("avg", "max")
    c.nas.proxies = ("dm", "random")
    c.nas.proxy_epochs, c.nas.early_epochs, c.nas.whole_epochs = 50, 1, 50
    c.nas.whole_strategy = c.eval.strategy
    c.nas.train_per_class, c.nas.test_per_class = 128, 0
  else:
    c.nas.depths, c.nas.widths = (1, 2), (16,)
    c.nas.acts, c.nas.norms, c.nas.pools = ("relu", "sigmoid"), ("instance",), ("avg",)
    c.nas.proxy_epochs, c.nas.early_epochs, c.nas.whole_epochs = 30, 1, 5
    c.nas.train_per_class, c.nas.test_per_class = 0, 0
  c.eval.batch_size = {"digits": 128, "runlocal": 64}.get(setting, 256)
  c.methods = ml_collections.ConfigDict({"dm": dm})
  return c
