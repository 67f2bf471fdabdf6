"""The built-in methods' names: each module `kdlab.methods.NAME` registers `loss=NAME`.

Known without importing a method (or torch), so the CLI's first look at the overrides
(kdlab.runs.screen) can refuse an unknown `loss=` in a fraction of a second;
`tests/test_method_registry.py` checks the names against the registry.
"""

BUILT_IN = (
    "ce", "kd", "dkd", "dist", "nkd", "ttm", "wttm", "ctkd", "mlkd", "wkd_l", "at", "nst", "sp",
    "pkt", "rkd", "hint", "ofd", "reviewkd", "crd", "cc", "vid", "ab", "ft", "fsp", "catkd", "ickd",
    "srd", "kdsvd", "sdd",
)  # fmt: skip
