"""RDN (Zhang et al. 2018): the Residual Dense Network for image super-resolution.

Targets are lazy ``"module:attr"`` strings, so listing components imports no torch.
"""

from __future__ import annotations

from typing import Any

from restorekit.hookspecs import hookimpl


@hookimpl
def register_generators(register: Any) -> None:
    register(
        "rdn",
        "restorekit_plugins.rdn.rdn:RDN",
        "RDN: residual dense blocks with global feature fusion, x2/x3/x4 (Zhang et al. 2018)",
        task="super_resolution",
        tiny_args={"G0": 8, "D": 2, "C": 2, "G": 4, "scale": 3},
    )
