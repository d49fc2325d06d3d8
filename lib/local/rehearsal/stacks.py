"""Every stack of the local environment applied to an emulator the rehearsal already runs, with the
deploy-local machinery (lib/local/deploy.py: synthesis, per-stack init/plan/apply and its logs).

Stacks whose dependencies are applied go side by side (a few at a time): most of a local apply is
the provider's waiters sleeping (RDS instances, the ALB, DMS), not work. The dependencies are the
manifest's cross-stack reads, plus the one read by name the manifest cannot see: the migration
stack's data sources find the account stack's DMS roles, so the account stack goes before every
stack but network (which it runs beside). No re-plan: `make deploy-local` checks that."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from lib.local.deploy import DeployError, LocalDeploy, StackRun, ordered_stacks, synthesize

PARALLEL_APPLIES = 3


class RehearsalDeploy(LocalDeploy):
    """LocalDeploy with one Terraform run per stack where it makes three (plan, apply the saved plan,
    show the state): `apply -auto-approve` plans and applies in one process, and `state list` counts
    the resources without starting the provider. Each provider start costs seconds on a busy
    machine, on the critical path of every stack; the plans `make scan` reads come from
    `make deploy-local`, not from here."""

    def apply(self, stack: str) -> StackRun:
        area = stack.removesuffix(f"-{self.config.name}")
        run = StackRun(stack, area)
        self.runs.append(run)
        terraform = self.terraform(stack)
        started = time.monotonic()
        self.run(terraform, stack, "init", "init", "-input=false", "-reconfigure")
        self.run(terraform, stack, "apply", "apply", "-input=false", "-auto-approve")
        run.apply_seconds = time.monotonic() - started
        listed = self.run(terraform, stack, "state list", "state", "list").stdout.split()
        run.resources = sum(1 for address in listed if not address.startswith("data.")
                            and ".data." not in address)
        return run


def dependencies(outdir: Path, env: str) -> dict[str, set[str]]:
    manifest = json.loads((outdir / "manifest.json").read_text())["stacks"]
    account, network = f"account-{env}", f"network-{env}"
    graph = {name: set(entry.get("dependencies", [])) for name, entry in manifest.items()}
    if account in graph:
        for name in graph:
            if name not in (account, network):
                graph[name].add(account)
    return graph


def synthesize_stacks(deployment: LocalDeploy) -> float:
    """The environment's stacks into the deployment's cdktf.out; returns the seconds it took."""
    for folder in (deployment.logs, deployment.plans):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
    started = time.monotonic()
    synthesize(deployment.config.name, deployment.outdir)
    return time.monotonic() - started


def apply_all(deployment: LocalDeploy, *, progress: Callable[[str], None],
              parallel: int = PARALLEL_APPLIES) -> list[StackRun]:
    """Apply every synthesized stack (dependencies first) to the emulator the stacks name.
    Returns the runs in the operator's order. Raises DeployError naming the stack that failed;
    stacks already running are let finish first."""
    env = deployment.config.name
    order = ordered_stacks(deployment.outdir, env)
    graph = dependencies(deployment.outdir, env)
    done: set[str] = set()
    running: dict[Future, str] = {}
    lock = threading.Lock()
    failure: str | None = None

    def apply(stack: str) -> StackRun:
        with lock:
            progress(f"applying {stack} …")
        return deployment.apply(stack)

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        while len(done) < len(order):
            if failure is None:
                for stack in order:
                    if (stack not in done and stack not in running.values() and graph[stack] <= done
                            and len(running) < parallel):
                        running[pool.submit(apply, stack)] = stack
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                stack = running.pop(future)
                try:
                    run = future.result()
                except Exception as error:  # noqa: BLE001 - named and re-raised below
                    failure = failure or f"{stack}: {error}"
                    continue
                done.add(stack)
                with lock:
                    progress(f"{stack}: {run.resources} resources in {run.apply_seconds:.0f} s")
    if failure:
        raise DeployError(failure)
    return sorted(deployment.runs, key=lambda run: order.index(run.name))
