"""The CLI's first, torch-free look at a training command's overrides: an unknown config
group option (`model=nosuch`, `loss=nope`, `experiment=nosuch`) or a group given a mapping
(`model={a:1}`), an added key the typed config lacks or a deleted setting (`+foo=1`,
`+trainer.epochz=5`, `~trainer`), a value out of its range (`T=inf`, `optim.lr=0`,
`data.views=both`, `loss=at loss.beta=-1`, a method's declared bounds such as `loss=at
loss.p=0`, ...) and a mistake between keys that are known (`optim=dot` outside kdlab distill,
a warm-up as long as training, a fixed-size data set's `data.image_size`, a batch of images
larger than the machine's memory, an image folder's data.root that is a file or lists one
class, teacher.weights that do not fit teacher.ckpt, a teacher.ckpt that names no file,
`kdlab fitnet loss=at`, loss=mlkd's data.views) are refused before torch is imported (~2.5 s
of a command on a small machine), with the line the full pre-flight (kdlab.runs.preflight)
would print for it: both call the same check.

It refuses only what it is sure of and leaves everything else to the pre-flight, which checks
these again on the composed config: a value of another type, an interpolation, a sweep, a key
it does not know (a plain `key=value` Hydra cannot place), an added or deleted key under
`loss.*` or under a group whose option it does not know for sure, a deletion Hydra refuses
in its own words (`~trainer.epochs`, `~model`), a check that needs a key's
default where `experiment=` or `preset=` may change it (else the schema's default stays: the
command's YAML sets none), a method's `check` beyond its declared bounds, a plugin's method or
data set, a data set's own keys it does not type (cifar10's `data.download`), a file's
contents, a model, a GPU (only where the machine surely has none: cuda:N, fp16 on a CPU). The
checks run in the pre-flight's order, so an input with one mistake gets the pre-flight's
line; with several, the screen may name another one first.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeGuard

from omegaconf import MISSING

from kdlab.data.folder_layout import ImageFolderConfig
from kdlab.data.folder_layout import check as check_image_folder
from kdlab.data.names import BUILT_IN as DATA_SETS
from kdlab.data.names import CHANNELS, DEFAULT_VIEWS, IMAGE_SIZES, VIEWS
from kdlab.data.settings import (
    DataConfig,
    channel_count,
    check_batch_fits,
    check_common,
    check_fixed_size,
    check_stats_channels,
)
from kdlab.engine.settings import (
    OPTIMIZERS,
    SCHEDULES,
    TrainerConfig,
    announced_world_size,
)
from kdlab.engine.trackers import SETTINGS as TRACKERS
from kdlab.errors import KdlabError
from kdlab.methods.names import BUILT_IN as METHODS
from kdlab.methods.names import (
    TRAITS,
    check_stage2_method,
    check_teachers_taken,
    check_view_count,
)
from kdlab.methods.numbers import BOUNDS, NUMBERS, SWITCHES, check_bound, check_number
from kdlab.models.names import BUILT_IN as MODELS
from kdlab.paths import config_dir, found_checkpoint
from kdlab.runs.distill_settings import STAGE2_MODES, FitnetConfig, TeacherConfig
from kdlab.runs.keys import check_added_or_deleted, check_group_mapping, judged_by_hydra
from kdlab.runs.ranges import (
    check_alpha,
    check_batch_split,
    check_cache_dir,
    check_cuda_index,
    check_device_name,
    check_dot,
    check_fitnet_values,
    check_fp16_device,
    check_optim_values,
    check_sched_values,
    check_seed,
    check_teacher_count,
    check_temperature,
    check_trainer_values,
    choice,
)
from kdlab.runs.schema import SCHEMAS, command_defaults, typed_options
from kdlab.runs.suggest import unknown_option

# The options of the groups made from a registry, with the module whose import lets a plugin
# (or code in this process) register more: then the pre-flight, which sees them, judges.
REGISTRY_GROUPS = {
    "model": ("kdlab.models.registry", MODELS),
    "data": ("kdlab.data.registry", DATA_SETS),
    "loss": ("kdlab.methods.base", METHODS),
}
# The built-in data sets with settings and a check of their own (DatasetSpec.settings,
# .check), torch-free: tests/test_registries.py checks them against the registry.
DATA_CHECKS: dict[str, tuple[type[DataConfig], Callable[[Any], None]]] = {
    "imagefolder": (ImageFolderConfig, check_image_folder),
}
FIXED_GROUPS = {
    "optim": tuple(OPTIMIZERS),
    "sched": tuple(SCHEDULES),
    "stage2": STAGE2_MODES,
    "logger": tuple(TRACKERS),
}
# The top-level settings of the distillation commands (kdlab.runs.schema.DistillConfig) and
# kdlab train's seed, by type: tests/test_screen.py checks them against the schema.
RUN_NUMBERS: dict[str, type] = {"seed": int}
DISTILL_NUMBERS: dict[str, type] = {"T": float, "alpha": float}


@dataclass(frozen=True)
class Overrides:
    """A command's plain `key=value` overrides, as Hydra's parser typed their values.
    `settled`: no experiment=/preset= and no added, deleted or swept key, so every key the
    overrides do not set keeps its schema's default (conf/COMMAND.yaml sets none)."""

    command: str
    values: dict[str, Any]
    settled: bool

    def under(self, prefix: str) -> dict[str, Any]:
        """The `prefix.KEY=value` overrides, by KEY."""
        head = f"{prefix}."
        return {k.removeprefix(head): v for k, v in self.values.items() if k.startswith(head)}

    def known(self, *keys: str) -> bool:
        """Whether the composed config's `keys` are known: given, or defaults that stay."""
        return self.settled or all(k in self.values for k in keys)


def screen_overrides(command: str, overrides: Sequence[str]) -> None:
    """Raise the pre-flight's one line for a mistake the overrides show by themselves."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException:
        return  # the pre-flight words a parse error
    plain = {o.key_or_group: o.value() for o in parsed if is_plain(o)}
    named = {o.key_or_group for o in parsed}
    settled = len(plain) == len(parsed) and not named & {"experiment", "preset"}
    given = Overrides(command, plain, settled)
    defaults = command_defaults(command)
    groups = command_groups(defaults)
    check_group_values(command, parsed, groups)
    check_group_options(given, defaults)
    check_added_and_deleted(command, parsed, defaults, groups)
    check_run_values(given, defaults)
    check_data(given, defaults)
    guessed = None if named & {"experiment", "preset", "loss"} else defaults.get("loss")
    loss = built_in_method(plain.get("loss", guessed))
    if "loss" in defaults:  # kdlab distill and fitnet
        check_distill_values(given, plain.get("loss", guessed), loss)
    check_views(given, defaults, loss if command == "distill" else None)
    if "stage2" in defaults:  # kdlab fitnet
        if loss is not None:
            logit = [name for name, t in TRAITS.items() if t.taps == "logits" and t.uses_views == 1]
            check_stage2_method(loss, logit)
        check_typed(FitnetConfig, given.under("fitnet"), check_fitnet_values)
    if "loss" in defaults:
        check_teacher_files(given, loss)


def is_plain(override: Any) -> bool:
    """A `key=value` override: no added, deleted or swept key."""
    return not (
        override.is_delete()
        or override.is_add()
        or override.is_force_add()
        or override.is_sweep_override()
    )


def built_in_method(loss: Any) -> str | None:
    """loss=`loss` where it is a built-in method no plugin could have replaced (the registry
    unimported), whose traits kdlab.methods.names.TRAITS holds; else None."""
    known = literal(loss) and group_options("loss") is not None and loss in TRAITS
    return loss if known else None


def group_options(group: str) -> tuple[str, ...] | None:
    """The options of `group` known without torch: None where a plugin may have added some,
    or for a group that is neither generated here nor a folder of conf/."""
    if group in REGISTRY_GROUPS:
        module, names = REGISTRY_GROUPS[group]
        return None if module in sys.modules else names
    if group in FIXED_GROUPS:
        return FIXED_GROUPS[group]
    folder = config_dir() / group  # experiment=, preset=: its YAML files
    return tuple(sorted(p.stem for p in folder.glob("*.yaml"))) if folder.is_dir() else None


def command_groups(defaults: dict[str, Any]) -> set[str]:
    """The config groups a command's override may name: its defaults list's and the folders
    of conf/ (experiment=, preset=)."""
    return set(defaults) | {p.name for p in config_dir().iterdir() if p.is_dir()}


def check_group_values(command: str, parsed: Sequence[Any], groups: set[str]) -> None:
    """A config group given a mapping (`model={a:1}`), as the pre-flight words it."""
    for override in parsed:
        group = override.key_or_group
        if group in groups and not override.is_sweep_override():
            check_group_mapping(command, override)


def check_group_options(given: Overrides, defaults: dict[str, Any]) -> None:
    """Each chosen option of the command's groups exists (`logger=` takes a list)."""
    for group in defaults:
        chosen = given.values.get(group)
        names = chosen if group == "logger" and isinstance(chosen, list) else [chosen]
        options = group_options(group)
        for name in names:
            nested = "/" in str(name)  # a nested group's option: Hydra's to judge
            if literal(name) and not nested and options is not None and name not in options:
                raise KdlabError(unknown_option(group, name, sorted(options)))


def check_added_and_deleted(
    command: str, parsed: Sequence[Any], defaults: dict[str, Any], groups: set[str]
) -> None:
    """The pre-flight's rule for `+KEY=V` and `~KEY` (kdlab.runs.keys) on the command's typed
    defaults with the chosen options, for every key whose node is sure: not a method's
    settings (`loss.*`), nor those of a group whose option an experiment, a preset, a plugin
    or another added, deleted or swept override may choose."""
    chosen = chosen_options(parsed, defaults)
    unsure = {group for group, name in chosen.items() if name is None} | {"loss"}
    typed = typed_options(command, {g: defaults[g] if n is None else n for g, n in chosen.items()})
    for override in parsed:
        key = override.key_or_group
        inside = key.partition(".")[0] in unsure and "." in key
        hydras = judged_by_hydra(key) or deletion_hydra_refuses(command, override, defaults)
        if not (hydras or override.is_sweep_override() or inside):
            check_added_or_deleted(command, override, typed, groups)


def deletion_hydra_refuses(command: str, override: Any, defaults: dict[str, Any]) -> bool:
    """A `~KEY` that Hydra's composition refuses in its own words before the pre-flight's
    rule is reached: a key inside a node (`~trainer.epochs`: a typed node takes no deletion),
    a config group whose schema has no default (`~model`, `~data`: no value then) or whose
    default is a list of options (`~logger`)."""
    if not override.is_delete():
        return False
    key = override.key_or_group
    unset = {f.name for f in fields(SCHEMAS[command]) if f.default == MISSING}
    return "." in key or (key in defaults and (key in unset or isinstance(defaults[key], list)))


def chosen_options(parsed: Sequence[Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Each config group's option the overrides surely choose (`logger`: a list of them):
    given plainly, or its default where no experiment or preset is named; None where not
    sure, or not an option known without the registries."""
    named = {o.key_or_group: o for o in parsed}
    moved = bool(named.keys() & {"experiment", "preset"})
    chosen: dict[str, Any] = {}
    for group, default in defaults.items():
        override = named.get(group)
        name = override.value() if override is not None and is_plain(override) else None
        if override is None and not moved:
            name = default
        names = name if isinstance(name, list) else [name]
        options = group_options(group) if group != "model" else None
        known = options is not None and all(literal(n) and n in options for n in names)
        chosen[group] = names if group == "logger" and known else name if known else None
    return chosen


def check_run_values(given: Overrides, defaults: dict[str, Any]) -> None:
    """What every training command checks first: seed, trainer.*, the device, optim.*,
    sched.*; a check of several keys where all of them are known."""
    seed = typed_number(given.values.get("seed"), RUN_NUMBERS["seed"])
    if seed is not None:
        check_seed(int(seed))
    trainer = composed(TrainerConfig(), given.under("trainer"))
    if trainer is not None:
        check_trainer_values(trainer)
        if given.known("trainer.batch_size"):
            check_batch_split(trainer.batch_size, announced_world_size())
        check_device(trainer, given)
    optim = composed(option(OPTIMIZERS, given, defaults, "optim"), given.under("optim"))
    if optim is not None:
        check_optim_values(optim)
        # fp16 with optim=dot: on a CPU, fp16's own line comes first (only torch can tell)
        fp16 = trainer is None or str(trainer.precision) == "fp16"
        if optim.name == "dot" and given.settled and not fp16:
            check_dot(optim, trainer, given.command == "distill", announced_world_size())
    sched = composed(option(SCHEDULES, given, defaults, "sched"), given.under("sched"))
    if sched is not None:
        known = trainer is not None and given.known("trainer.epochs", "sched.warmup_epochs")
        check_sched_values(sched, trainer.epochs if known else None)


def option(options: dict[str, Any], given: Overrides, defaults: dict[str, Any], group: str) -> Any:
    """The schema of `group`'s chosen option (its default where settled), else its first."""
    name = given.values.get(group, defaults[group] if given.settled else None)
    chosen = isinstance(name, str) and name in options
    return options[name] if chosen else next(iter(options.values()))


def check_device(trainer: TrainerConfig, given: Overrides) -> None:
    """trainer.device's name; where the machine surely has no GPU, a CUDA GPU, and fp16 on
    a CPU (only torch can tell otherwise)."""
    device = trainer.device
    if not literal(device):
        return
    check_device_name(device)
    if given.known("trainer.device") and without_accelerators():
        check_cuda_index(device, 0)
    on_cpu = device.startswith("cpu") or (device == "auto" and without_accelerators())
    if given.known("trainer.device", "trainer.precision"):
        check_fp16_device(str(trainer.precision), on_cpu)


def without_accelerators() -> bool:
    """Surely no GPU torch could use: Linux without the NVIDIA driver (/proc/driver/nvidia),
    ROCm's (/dev/kfd) or WSL's GPU device (/dev/dxg), where torch.cuda finds no device and
    MPS (macOS only) is not available."""
    return sys.platform.startswith("linux") and not any(
        Path(p).exists() for p in ("/proc/driver/nvidia", "/dev/kfd", "/dev/dxg")
    )


def check_data(given: Overrides, defaults: dict[str, Any]) -> None:
    """The `data` node of a built-in set as kdlab.data.registry.check_data_settings checks
    it (the settings every set has, the set's own check, the stats' channels, a fixed image
    size), then kdlab.data.registry.check_batch_memory; a plugin's set and a node with keys
    of a set's own that the screen does not type (cifar10's data.download) are the
    pre-flight's."""
    name = given.values.get("data", defaults["data"] if given.settled else None)
    overrides = given.under("data")
    paired = given.known("data.mean", "data.std") or not {"mean", "std"} & set(overrides)
    built_in = literal(name) and name in DATA_SETS and group_options("data") is not None
    if not (built_in and paired and overrides):
        return  # a plugin may replace the set; an experiment may set the other of the pair
    fixed = IMAGE_SIZES[name]  # also its settings' default image_size
    schema, own_check = DATA_CHECKS.get(name, (DataConfig, None))
    data = composed(
        schema(name=name) if fixed is None else schema(name=name, image_size=fixed), overrides
    )
    if data is None:
        return
    check_common(data)
    if own_check is not None:
        own_check(data)
    channels = channel_count(data, CHANNELS[name])
    counted = CHANNELS[name] is not None or given.known("data.channels")
    if counted:
        check_stats_channels(data, channels)
    check_fixed_size(name, fixed, data.image_size)
    trainer = composed(TrainerConfig(), given.under("trainer"))
    batch_known = given.known("trainer.batch_size", "trainer.eval_batch_size", "data.image_size")
    if counted and trainer is not None and batch_known:
        batch = max(trainer.batch_size, trainer.eval_batch_size)
        check_batch_fits(fixed or data.image_size, channels, batch)


def check_distill_values(given: Overrides, loss: Any, method: str | None) -> None:
    """loss=NAME's number settings (`loss` None: not known without composing), T, alpha,
    teacher.model, teacher.ckpt and .weights (`method`: the built-in `loss`, whose teachers
    are counted), and teacher.cache_dir."""
    for key, kind in NUMBERS.get(loss, {}).items() if isinstance(loss, str) else ():
        value = typed_number(given.values.get(f"loss.{key}"), kind)
        if value is not None:
            check_number(loss, key, value)
    if isinstance(loss, str):
        check_bounds(given, loss)
    T = typed_number(given.values.get("T"), DISTILL_NUMBERS["T"])
    if T is not None:
        check_temperature(T)
    alpha = typed_number(given.values.get("alpha"), DISTILL_NUMBERS["alpha"])
    if alpha is not None:
        check_alpha(alpha)
    teacher = given.values.get("teacher.model")
    if literal(teacher) and group_options("model") is not None:
        choice(teacher, MODELS, "teacher.model")
    check_teachers(given, method)
    cache_dir = given.values.get("teacher.cache_dir")
    if literal(cache_dir):
        check_cache_dir(cache_dir)


def check_bounds(given: Overrides, loss: str) -> None:
    """loss=`loss`'s own bounds (kdlab.methods.numbers.BOUNDS) on the values given, where the
    switch a bound depends on is known (given, or its default that stays)."""
    for bound in BOUNDS.get(loss, ()):
        value = given.values.get(f"loss.{bound.key}")
        if bound.length:
            numbers = isinstance(value, list) and all(
                typed_number(v, float) is not None for v in value
            )
            value = value if numbers else None
        else:
            value = typed_number(value, NUMBERS[loss][bound.key])
        switch = SWITCHES.get(loss, {}).get(bound.when) if given.settled else None
        switched_on = given.values.get(f"loss.{bound.when}", switch) if bound.when else True
        if value is not None and isinstance(switched_on, bool):
            check_bound(loss, bound, value, switched_on)


def check_teachers(given: Overrides, method: str | None) -> None:
    """teacher.ckpt and teacher.weights agree (a resume counts its pinned teachers), and
    kdlab fitnet and a built-in `method` of one teacher have one."""
    teacher, resume = typed_teacher(given, "teacher.ckpt", "teacher.weights")
    if teacher is not None and resume is not None:
        count = check_teacher_count(teacher, resume, given.command == "fitnet")
        if method is not None:
            check_teachers_taken(method, TRAITS[method].one_teacher, count)


def typed_teacher(given: Overrides, *keys: str) -> tuple[TeacherConfig | None, bool | None]:
    """teacher.* and resume as the schema types them, where `keys` and resume are known
    (given, or defaults that stay); None for what is not known or not typed."""
    if not given.known(*keys, "resume"):
        return None, None
    teacher = composed(TeacherConfig(), given.under("teacher"))
    resume = composed(ResumeFlag(), {"resume": given.values.get("resume", False)})
    return teacher, None if resume is None else resume.resume


def check_teacher_files(given: Overrides, method: str | None) -> None:
    """Each teacher.ckpt names a checkpoint file or a run dir with one (the pre-flight's first
    look at a teacher, kdlab.runs.teacher_files), where it is surely read: by kdlab fitnet or a
    built-in `method` that reads a teacher, in a run that is no resume (which reads the
    teachers its checkpoint pins)."""
    reads = given.command == "fitnet" or (method is not None and TRAITS[method].taps != "none")
    teacher, resume = typed_teacher(given, "teacher.ckpt") if reads else (None, None)
    if teacher is None or resume is not False:
        return
    for ckpt in teacher.checkpoints():
        if literal(ckpt):
            found_checkpoint(Path(ckpt).expanduser().resolve())


def check_views(given: Overrides, defaults: dict[str, Any], method: str | None) -> None:
    """data.views gives each image the views `method` reads (None: a command without one);
    the default views are a built-in data set's, where no plugin could have added one."""
    data = given.values.get("data", defaults["data"] if given.settled else None)
    built_in = data in DATA_SETS and group_options("data") is not None
    views = given.values.get("data.views", DEFAULT_VIEWS if given.settled and built_in else None)
    judged = method is not None or given.command != "distill"
    if judged and isinstance(views, str) and views in VIEWS:
        check_view_count(method, 1 if method is None else TRAITS[method].uses_views, views)


@dataclass
class ResumeFlag:
    """The top-level `resume` as the run's schema types it (kdlab.runs.schema.RunConfig)."""

    resume: bool = False


def literal(value: Any) -> TypeGuard[str]:
    """A name or path as typed: a string that is no interpolation (`${...}`)."""
    return isinstance(value, str) and "${" not in value


def typed_number(value: Any, kind: type) -> float | None:
    """`value` as OmegaConf types it for a field of `kind` (int or float); None for anything
    it would refuse or that is no number (null), which the pre-flight words."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if kind is int:
        return value if isinstance(value, int) else None
    return float(value)


def composed(base: Any, overrides: dict[str, Any]) -> Any | None:
    """`base` (a schema's defaults) with the overrides merged in, as OmegaConf types them;
    None for a value of the wrong type or an unknown key, which the pre-flight words (it
    knows the did-you-mean)."""
    if not overrides:
        return base
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(base), overrides))
    except (OmegaConfBaseException, ValueError):
        return None


def check_typed(schema: type, overrides: dict[str, Any], check: Callable[[Any], None]) -> None:
    """Run `check` on `schema`'s defaults with the overrides merged in (the defaults pass
    every check: only an override can fail one)."""
    typed = composed(schema(), overrides)
    if overrides and typed is not None:
        check(typed)
