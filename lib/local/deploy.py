"""Applies every stack of the local environment to the emulator, in the operator's order, then
plans each again and checks that nothing changes except what lib/local/limits.py declares.

    python -m lib.local.deploy [--env local] [--keep-running]

Synthesizes the environment into build/deploy-local/cdktf.out (cdktf.out stays the one `make
synth` wrote), starts the emulator on the config's endpoint, creates what the config expects to
exist (the state bucket, the VPN gateway), then for each stack: `terraform init` (state in the
emulator's S3), `terraform plan -out` and `terraform apply` of that plan. Each stack reads the others
through remote state, as in AWS. After the last one, each stack is planned again; its plan is
kept as JSON for `make scan`.

Writes build/deploy-local/summary.json:
    {"stacks": [{"name", "resources", "apply_seconds", "replan"}],
     "excluded": [{"resource", "reason"}], "emulator_differences": [{"stack", "attribute", "reason"}],
     "shims": [{"name", "moto_behaviour"}]}
where "replan" is "no changes" or the list of drifting attributes. Exits non-zero, naming the
stack, when an apply fails or an undeclared attribute drifts.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib.config import Config, ConfigError, load_config
from lib.local.limits import EMULATOR_DIFFERENCES, EXCLUDED
from lib.terraform import REPO_ROOT, Terraform, TerraformError, find_mirror, shown, terraform_version

WORK_DIR = REPO_ROOT / "build" / "deploy-local"
# The operator's order (README, runbook step 1); each stack reads only stacks before it.
# Stacks applied at once when their dependencies allow: a local apply is mostly waiting.
PARALLEL_APPLIES = 3
DEPLOY_ORDER = ("account", "network", "security", "database", "compute", "load-balancer", "migration", "routing",
                "monitoring", "validation", "cutover")


class DeployError(Exception):
    pass


@dataclass
class StackRun:
    name: str
    area: str
    resources: int = 0
    apply_seconds: float = 0.0
    replan: str | list[str] = "not planned"
    undeclared: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "resources": self.resources, "apply_seconds": round(self.apply_seconds, 1),
                "replan": self.replan}


def synthesize(env: str, outdir: Path) -> None:
    started = time.monotonic()
    print(f"==> synthesizing {env} into {shown(outdir)}", flush=True)
    process = subprocess.run([sys.executable, str(REPO_ROOT / "main.py")], cwd=REPO_ROOT, text=True,
                             capture_output=True,
                             env={**os.environ, "PAYMENT_MIGRATION_ENV": env, "CDKTF_OUTDIR": str(outdir)})
    if process.returncode != 0:
        raise DeployError(f"synthesis of {env} failed:\n{process.stderr.strip()}")
    print(f"    done in {time.monotonic() - started:.1f} s", flush=True)


def ordered_stacks(outdir: Path, env: str) -> list[str]:
    manifest = json.loads((outdir / "manifest.json").read_text())["stacks"]
    rank = {f"{area}-{env}": index for index, area in enumerate(DEPLOY_ORDER)}
    unknown = sorted(set(manifest) - set(rank))
    if unknown:
        raise DeployError(f"stacks without a place in DEPLOY_ORDER: {', '.join(unknown)}")
    names = sorted(manifest, key=rank.__getitem__)
    for name in names:
        for dependency in manifest[name].get("dependencies", []):
            if rank[dependency] >= rank[name]:
                raise DeployError(f"{name} reads {dependency}, which deploys after it: fix DEPLOY_ORDER")
    return names


def managed_resources(state: dict[str, Any]) -> list[dict[str, Any]]:
    module = state.get("values", {}).get("root_module", {})
    return [resource for resource in module.get("resources", []) if resource.get("mode") == "managed"]


def drifting_attributes(plan: dict[str, Any]) -> list[tuple[str, str]]:
    """(resource address, attribute) for every planned change; ("address", "*") for a resource
    the plan would create or destroy as a whole."""
    drift = []
    for change in plan.get("resource_changes", []):
        actions = change["change"]["actions"]
        if actions in (["no-op"], ["read"]):
            continue
        address = change["address"]
        if actions in (["create"], ["delete"]):
            drift.append((address, "*"))
            continue
        before = change["change"].get("before") or {}
        after = change["change"].get("after") or {}
        unknown = change["change"].get("after_unknown") or {}
        attributes = sorted(key for key in set(before) | set(after)
                            if before.get(key) != after.get(key) or unknown.get(key) is True)
        drift += [(address, attribute) for attribute in attributes] or [(address, "?")]
    return drift


def declared(area: str, address: str, attribute: str) -> bool:
    return any(item.stack == area and fnmatch.fnmatchcase(address, item.address)
               and fnmatch.fnmatchcase(attribute, item.attribute) for item in EMULATOR_DIFFERENCES)


class LocalDeploy:
    def __init__(self, config: Config, work_dir: Path = WORK_DIR) -> None:
        if config.emulator is None:
            raise DeployError(f"environment {config.name} has no [emulator] section: it would deploy to AWS")
        self.config = config
        self.work_dir = work_dir
        self.outdir = work_dir / "cdktf.out"
        self.logs = work_dir / "logs"
        self.plans = work_dir / "plans"
        self.mirror = find_mirror()
        self.runs: list[StackRun] = []
        self._lock = threading.Lock()

    def prepare(self) -> float:
        """Empty the logs and plans of an earlier run and synthesize; returns the synthesis seconds."""
        for folder in (self.logs, self.plans):
            folder.mkdir(parents=True, exist_ok=True)
            for old in folder.iterdir():
                old.unlink()
        started = time.monotonic()
        synthesize(self.config.name, self.outdir)
        return time.monotonic() - started

    def terraform(self, stack: str) -> Terraform:
        return Terraform(self.outdir / "stacks" / stack, self.mirror,
                         env={"TF_PLUGIN_CACHE_MAY_BREAK_DEPENDENCY_LOCK_FILE": "1"})

    def log(self, stack: str, step: str, process: subprocess.CompletedProcess) -> None:
        with open(self.logs / f"{stack}.log", "a") as handle:
            handle.write(f"===== terraform {step} (exit {process.returncode})\n{process.stdout}\n{process.stderr}\n")

    def run(self, terraform: Terraform, stack: str, step: str, *args: str, ok: tuple[int, ...] = (0,)):
        process = terraform.run(*args, check=False)
        self.log(stack, step, process)
        if process.returncode not in ok:
            tail = "\n".join((process.stderr or process.stdout).strip().splitlines()[-25:])
            raise DeployError(f"{stack}: terraform {step} failed (log: {self._display(self.logs / (stack + '.log'))})"
                              f"\n{tail}")
        return process

    def apply(self, stack: str) -> StackRun:
        """init, then `apply -auto-approve` (plan and apply in one provider start: most of a local
        apply is the provider starting and its waiters sleeping), then count what the state holds."""
        area = stack.removesuffix(f"-{self.config.name}")
        run = StackRun(stack, area)
        with self._lock:
            self.runs.append(run)
        terraform = self.terraform(stack)
        started = time.monotonic()
        self.run(terraform, stack, "init", "init", "-input=false", "-reconfigure")
        self.run(terraform, stack, "apply", "apply", "-input=false", "-auto-approve")
        run.apply_seconds = time.monotonic() - started
        listed = self.run(terraform, stack, "state list", "state", "list").stdout.split()
        run.resources = sum(1 for address in listed if not address.startswith("data.") and ".data." not in address)
        return run

    def replan(self, run: StackRun) -> None:
        terraform = self.terraform(run.name)
        self.run(terraform, run.name, "re-plan", "plan", "-input=false", "-detailed-exitcode", "-out=replan",
                 ok=(0, 2))
        shown = self.run(terraform, run.name, "show re-plan", "show", "-json", "replan").stdout
        (self.plans / f"{run.name}.json").write_text(shown)
        drift = drifting_attributes(json.loads(shown))
        if not drift:
            run.replan = "no changes"
            return
        run.replan = [f"{address}.{attribute}" for address, attribute in drift]
        run.undeclared = [f"{address}.{attribute}" for address, attribute in drift
                          if not declared(run.area, address, attribute)]

    def undeclared_drift(self) -> str | None:
        undeclared = [run for run in self.runs if run.undeclared]
        if not undeclared:
            return None
        return "; ".join(f"{run.name} drifts in {', '.join(run.undeclared)}" for run in undeclared) + \
            " — fix the stack, or declare an emulator difference in lib/local/limits.py with its moto cause"

    def write_summary(self, excluded: list[dict[str, str]]) -> Path:
        path = self.work_dir / "summary.json"
        path.write_text(json.dumps(self.summary(excluded), indent=2) + "\n")
        return path

    def summary(self, excluded: list[dict[str, str]]) -> dict[str, Any]:
        from lib.local.emulator import SHIMS

        return {
            "stacks": [run.to_dict() for run in self.runs],
            "excluded": excluded,
            "emulator_differences": [{"stack": item.stack, "attribute": f"{item.address}.{item.attribute}",
                                      "reason": item.reason} for item in EMULATOR_DIFFERENCES],
            "shims": [{"name": shim.name, "moto_behaviour": shim.moto_behaviour} for shim in SHIMS],
        }

    def _display(self, path: Path) -> str:
        return shown(path)


def dependencies(outdir: Path, env: str) -> dict[str, set[str]]:
    """Which stacks each stack needs applied first: the manifest's cross-stack reads, plus the one
    read by name the manifest cannot see — the migration stack's data sources find the account
    stack's DMS roles — so the account stack goes before every stack but network."""
    manifest = json.loads((outdir / "manifest.json").read_text())["stacks"]
    account, network = f"account-{env}", f"network-{env}"
    graph = {name: set(entry.get("dependencies", [])) for name, entry in manifest.items()}
    if account in graph:
        for name in graph:
            if name not in (account, network):
                graph[name].add(account)
    return graph


def apply_all(deployment: LocalDeploy, *, progress: Callable[[str], None],
              parallel: int = PARALLEL_APPLIES) -> list[StackRun]:
    """Apply every synthesized stack, dependencies first, `parallel` at a time (stacks whose
    dependencies are applied go side by side). Returns the runs in the operator's order. Raises
    DeployError naming the stack that failed; stacks already running are let finish first."""
    env = deployment.config.name
    order = ordered_stacks(deployment.outdir, env)
    graph = dependencies(deployment.outdir, env)
    done: set[str] = set()
    running: dict[Future, str] = {}
    failure: str | None = None

    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="apply") as pool:
        while len(done) < len(order):
            if failure is None:
                for stack in order:
                    if (stack not in done and stack not in running.values() and graph[stack] <= done
                            and len(running) < parallel):
                        progress(f"applying {stack} …")
                        running[pool.submit(deployment.apply, stack)] = stack
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                stack = running.pop(future)
                try:
                    run = future.result()
                except Exception as error:  # noqa: BLE001 - named and re-raised below
                    failure = failure or str(error)
                    continue
                done.add(stack)
                progress(f"{stack}: {run.resources} resources in {run.apply_seconds:.0f} s")
    if failure:
        raise DeployError(failure)
    return sorted(deployment.runs, key=lambda run: order.index(run.name))


def replan_all(deployment: LocalDeploy, *, progress: Callable[[str], None], parallel: int = PARALLEL_APPLIES) -> None:
    """Plan every applied stack again (they change nothing, so all at once) and record its drift."""
    def replan(run: StackRun) -> StackRun:
        deployment.replan(run)
        return run

    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="replan") as pool:
        for run in pool.map(replan, list(deployment.runs)):
            progress(f"re-planned {run.name}: "
                     f"{run.replan if isinstance(run.replan, str) else ', '.join(run.replan)}")


def excluded_resources(outdir: Path) -> list[dict[str, str]]:
    """What synthesis left out of the local stacks (main.py records it), with each reason."""
    reasons = {item.resource_type: item.reason for item in EXCLUDED}
    recorded = outdir / "excluded.json"
    entries = json.loads(recorded.read_text()) if recorded.is_file() else []
    return [{"resource": f"{entry['stack']}: {entry['address']}", "reason": reasons[entry["address"].split(".")[0]]}
            for entry in entries]


def print_table(runs: list[StackRun]) -> None:
    print("\n    stack                    resources   apply s   re-plan", flush=True)
    for run in runs:
        replan = run.replan if isinstance(run.replan, str) else f"{len(run.replan)} declared emulator difference(s)"
        if run.undeclared:
            replan = f"UNDECLARED DRIFT: {', '.join(run.undeclared)}"
        print(f"    {run.name:<24} {run.resources:>9} {run.apply_seconds:>9.1f}   {replan}", flush=True)
    total = sum(run.apply_seconds for run in runs)
    print(f"    {'total':<24} {sum(run.resources for run in runs):>9} {total:>9.1f}", flush=True)


def deploy(env: str, *, keep_running: bool = False) -> int:
    try:
        config = load_config(env)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    deployment = LocalDeploy(config)
    print(f"==> terraform {terraform_version()}, hashicorp/aws {deployment.mirror.version} from "
          f"{deployment.mirror.root}", flush=True)
    deployment.prepare()
    stacks = ordered_stacks(deployment.outdir, config.name)
    excluded = excluded_resources(deployment.outdir)

    from lib.local.emulator import SHIMS, Emulator

    emulator = Emulator(config.emulator.port, execute_state_machines=True)
    failure: str | None = None
    started = time.monotonic()
    say = lambda message: print(f"    {message}", flush=True)  # noqa: E731
    try:
        for item in emulator.seed(config):
            print(f"==> created {item} in the emulator ({emulator.endpoint})", flush=True)
        print(f"==> applying {len(stacks)} stacks, {PARALLEL_APPLIES} at a time when their dependencies allow",
              flush=True)
        apply_all(deployment, progress=say)
        print("==> re-planning every stack", flush=True)
        replan_all(deployment, progress=say)
        failure = deployment.undeclared_drift()
    except (DeployError, TerraformError) as error:
        failure = str(error)
    finally:
        summary_path = deployment.write_summary(excluded)
        print_table(deployment.runs)
        print(f"\n    left out locally: {len(excluded)} resource(s); declared emulator differences: "
              f"{len(EMULATOR_DIFFERENCES)}; shims: {len(SHIMS)} — {shown(summary_path)}",
              flush=True)
        if keep_running and failure is None:
            print(f"==> emulator still serving {emulator.endpoint}; Ctrl-C stops it", flush=True)
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        emulator.stop()
    if failure:
        print(f"\nerror: {failure}", file=sys.stderr)
        return 1
    print(f"==> every stack applied and re-planned in {time.monotonic() - started:.0f} s", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.local.deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="local", help="an environment with an [emulator] section (default local)")
    parser.add_argument("--keep-running", action="store_true", help="leave the emulator serving after the deploy")
    args = parser.parse_args(argv)
    return deploy(args.env, keep_running=args.keep_running)


if __name__ == "__main__":
    sys.exit(main())
