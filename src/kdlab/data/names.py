"""The built-in data sets' names: the options of `data=` that kdlab.data.registry registers;
the views a training image may have (data.views), and their default in every built-in set.

Known without importing a loader (or torch), so the CLI's first look at the overrides
(kdlab.runs.screen) can refuse an unknown `data=` in a fraction of a second;
`tests/test_registries.py` checks the names against the registry.
"""

BUILT_IN = ("cifar10", "cifar100", "imagefolder", "fashion_mnist", "mnist", "kmnist", "synthetic")
VIEWS = {"weak": 1, "weak_strong": 2}  # data.views -> views per training image
DEFAULT_VIEWS = "weak"
