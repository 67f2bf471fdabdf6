"""The built-in data sets' names: the options of `data=` that kdlab.data.registry registers;
the views a training image may have (data.views), and their default in every built-in set;
each built-in set's own settings (beyond DataConfig's), its fixed image side and channels.

Known without importing a loader (or torch), so the CLI's first look at the overrides
(kdlab.runs.screen) can refuse an unknown `data=` or a `data.image_size` a set cannot take
in a fraction of a second; `tests/test_registries.py` checks them against the registry.
"""

BUILT_IN = ("cifar10", "cifar100", "imagefolder", "fashion_mnist", "mnist", "kmnist", "synthetic")
VIEWS = {"weak": 1, "weak_strong": 2}  # data.views -> views per training image
DEFAULT_VIEWS = "weak"
# Each built-in set's `data.KEY`s beyond DataConfig's fields.
OWN_SETTINGS: dict[str, tuple[str, ...]] = {
    "cifar10": ("download", "verify_md5"),
    "cifar100": ("download", "verify_md5"),
    "imagefolder": ("channels",),
    "fashion_mnist": ("download",),
    "mnist": ("download",),
    "kmnist": ("download",),
    "synthetic": (),
}
# Each built-in set's image side (DatasetSpec.image_size); None: resized to data.image_size.
IMAGE_SIZES: dict[str, int | None] = {
    "cifar10": 32,
    "cifar100": 32,
    "imagefolder": None,
    "fashion_mnist": 28,
    "mnist": 28,
    "kmnist": 28,
    "synthetic": None,
}
# Each built-in set's image channels (DatasetSpec.channels); None: data.channels.
CHANNELS: dict[str, int | None] = {
    "cifar10": 3,
    "cifar100": 3,
    "imagefolder": None,
    "fashion_mnist": 1,
    "mnist": 1,
    "kmnist": 1,
    "synthetic": 3,
}
