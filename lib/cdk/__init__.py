"""The one place the project imports its CDK from. PAYMENT_MIGRATION_CDK selects the implementation:

    cdktf   CDK for Terraform (default; deprecated by HashiCorp on 2025-12-10), pinned in Pipfile.lock
    cdktn   CDK Terrain, its community fork, pinned in requirements-cdktn.txt and installed into its
            own environment (.venv-cdktn) by `make synth CDK=cdktn`

The core classes come from here, the AWS provider's bindings from `lib.cdk.aws`, one module at a
time as the bindings name them (loading every module costs ~11 s per process):

    from lib.cdk import App, TerraformStack
    from lib.cdk.aws.vpc import Vpc

`lib.cdk.aws[.<module>]` is the selected bindings' own module under a second name in sys.modules,
never a copy: each module, and the jsii assembly it registers, is loaded once. `constructs` is
imported as itself: both implementations use that package, each environment at its own version.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType

VARIABLE = "PAYMENT_MIGRATION_CDK"
AWS = f"{__name__}.aws"


@dataclass(frozen=True)
class Implementation:
    name: str
    core: str  # the module of App, TerraformStack, Fn, ...
    aws: str  # the package of the hashicorp/aws bindings
    environment: str  # the virtual environment the Makefile installs it into


IMPLEMENTATIONS = {
    "cdktf": Implementation("cdktf", core="cdktf", aws="cdktf_cdktf_provider_aws", environment=".venv"),
    "cdktn": Implementation("cdktn", core="cdktn", aws="cdktn_provider_aws", environment=".venv-cdktn"),
}
DEFAULT = "cdktf"


def selected() -> Implementation:
    name = os.environ.get(VARIABLE, "").strip() or DEFAULT
    if name not in IMPLEMENTATIONS:
        raise ImportError(f"{VARIABLE}={name}: expected one of {', '.join(IMPLEMENTATIONS)}")
    return IMPLEMENTATIONS[name]


SELECTED = selected()


def _import(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name != module.split(".")[0]:
            raise
        raise ImportError(f"{VARIABLE}={SELECTED.name}: {error.name} is not installed in {sys.prefix}; "
                          f"`make synth CDK={SELECTED.name}` installs it into {SELECTED.environment}") from error


class _BindingsAlias(MetaPathFinder, Loader):
    """Imports `lib.cdk.aws` and its submodules as the selected bindings' modules. The loader swaps
    the real module into sys.modules, which the import system then returns: a module loaded a second
    time under this name would register its jsii assembly again."""

    def find_spec(self, fullname: str, path=None, target=None) -> ModuleSpec | None:
        if fullname != AWS and not fullname.startswith(f"{AWS}."):
            return None
        return ModuleSpec(fullname, self, is_package=True)

    def exec_module(self, module: ModuleType) -> None:
        sys.modules[module.__name__] = _import(SELECTED.aws + module.__name__.removeprefix(AWS))


# Ahead of the path finder, which would find the submodules in the real package's __path__.
sys.meta_path.insert(0, _BindingsAlias())

_core = _import(SELECTED.core)

App = _core.App
Aspects = _core.Aspects
AssetType = _core.AssetType
Fn = _core.Fn
IAspect = _core.IAspect
LocalExecProvisioner = _core.LocalExecProvisioner
S3Backend = _core.S3Backend
TerraformAsset = _core.TerraformAsset
TerraformResource = _core.TerraformResource
TerraformResourceLifecycle = _core.TerraformResourceLifecycle
TerraformStack = _core.TerraformStack
