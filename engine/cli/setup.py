"""`touchflow setup prefect`: what a Prefect server needs before deployed ticks can run — the work
pool, the global send rate's concurrency limit (`touchflow-send`, from `touchflow.yaml`'s
`policy.rate_limit`) and the SendGrid Secret block the project names. Idempotent: run it after
every change of the rate; it creates what is missing, updates what differs, and says what it did.

`prefect_checks` is the read-only half, shown by `touchflow status`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Any

import typer

from engine.cli.common import err, out, project_or_exit
from engine.config import load_settings
from engine.policy.ratelimit import DEFAULT_NAME, grant_slots
from engine.project import Project

DEFAULT_POOL = "touchflow"

setup = typer.Typer(no_args_is_help=True, help="Prepare the services Touchflow runs on.")


@dataclass(frozen=True)
class Check:
    """One thing a Prefect deployment of Touchflow needs: whether it is there, and what to do."""

    item: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LimitSpec:
    """The concurrency limit the rate asks for: `limit` slots decaying at `rate` a second."""

    name: str
    limit: int
    rate: float


def wanted_limit(project: Project) -> LimitSpec | None:
    """The `touchflow-send` limit `touchflow.yaml`'s rate needs (`GRANT_SECONDS` worth of slots,
    decaying at the rate: what engine/policy/ratelimit.py's PrefectRateLimiter takes in bulk),
    or None when no rate is set or the store keeps it (`rate_limiter: database`)."""
    policy = project.delivery.policy
    if policy.rate_limit is None or policy.rate_limiter == "database":
        return None
    rate = float(policy.rate_limit)
    return LimitSpec(DEFAULT_NAME, grant_slots(rate), rate)


def prefect_checks(project: Project, pool: str = DEFAULT_POOL) -> list[Check]:
    """What the Prefect server has and lacks for this project (reads only). Raises nothing for a
    server that does not answer: that is a failed check."""
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        return [Check("Prefect server", False, "PREFECT_API_URL is not set (ticks run in ephemeral mode)")]
    try:
        with get_client(sync_client=True) as client:
            return [_pool_check(client, pool), _limit_check(client, wanted_limit(project)), _block_check(project)]
    except Exception as exc:  # an unreachable server is a finding, not a traceback
        return [Check("Prefect server", False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")]


def _pool_check(client: Any, pool: str) -> Check:
    from prefect.exceptions import ObjectNotFound

    try:
        found = client.read_work_pool(pool)
    except ObjectNotFound:
        return Check(f"work pool '{pool}'", False, "missing: run `touchflow setup prefect`")
    return Check(f"work pool '{pool}'", True, f"type {found.type}")


def _limit_check(client: Any, wanted: LimitSpec | None) -> Check:
    if wanted is None:
        return Check(f"limit '{DEFAULT_NAME}'", True, "not needed: no Prefect-kept rate_limit in touchflow.yaml")
    found = _read_limit(client, wanted.name)
    item = f"limit '{wanted.name}'"
    if found is None:
        return Check(item, False, "missing: run `touchflow setup prefect` (sending would use the store's schedule)")
    have = (int(found.limit), float(found.slot_decay_per_second or 0.0), bool(found.active))
    if have != (wanted.limit, wanted.rate, True):
        return Check(item, False, f"{_shown(*have)}, wanted {_shown(wanted.limit, wanted.rate, True)}")
    return Check(item, True, _shown(*have))


def _shown(limit: int, rate: float, active: bool) -> str:
    return f"{limit} slots decaying at {rate:g}/s" + ("" if active else " (inactive)")


def _block_check(project: Project) -> Check:
    sendgrid = project.delivery.sendgrid
    name = sendgrid.api_key_block if project.delivery.channel == "sendgrid" else None
    if name is None:
        return Check("Secret block", True, "not needed: no sendgrid.api_key_block in touchflow.yaml")
    from prefect.blocks.system import Secret

    try:
        Secret.load(name)
    except ValueError:
        fix = f"python -c \"from prefect.blocks.system import Secret; Secret(value='SG…').save('{name}')\""
        return Check(f"Secret block '{name}'", False, f"missing: create it with {fix}")
    return Check(f"Secret block '{name}'", True, "present")


def _read_limit(client: Any, name: str) -> Any:
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        return None


def apply(project: Project, pool: str = DEFAULT_POOL, pool_type: str = "process") -> list[str]:
    """Create or update the work pool and the send limit; returns what was done, one line each."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
        WorkPoolCreate,
    )
    from prefect.exceptions import ObjectNotFound

    done: list[str] = []
    with get_client(sync_client=True) as client:
        try:
            found = client.read_work_pool(pool)
            done.append(f"work pool '{pool}': exists (type {found.type})")
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=pool, type=pool_type, base_job_template=_template(pool_type)))
            done.append(f"work pool '{pool}': created (type {pool_type})")
        wanted = wanted_limit(project)
        if wanted is None:
            done.append(f"limit '{DEFAULT_NAME}': not needed (no Prefect-kept rate_limit in touchflow.yaml)")
            return done
        limit = _read_limit(client, wanted.name)
        shown = _shown(wanted.limit, wanted.rate, True)
        if limit is None:
            create = GlobalConcurrencyLimitCreate(
                name=wanted.name, limit=wanted.limit, slot_decay_per_second=wanted.rate, active=True
            )
            client.create_global_concurrency_limit(create)
            done.append(f"limit '{wanted.name}': created, {shown}")
        elif (int(limit.limit), float(limit.slot_decay_per_second or 0.0), bool(limit.active)) != (
            wanted.limit,
            wanted.rate,
            True,
        ):
            update = GlobalConcurrencyLimitUpdate(limit=wanted.limit, slot_decay_per_second=wanted.rate, active=True)
            client.update_global_concurrency_limit(wanted.name, update)
            done.append(f"limit '{wanted.name}': updated to {shown}")
        else:
            done.append(f"limit '{wanted.name}': up to date, {shown}")
    return done


def _template(pool_type: str) -> dict[str, Any]:
    """The worker type's default job template (what `prefect work-pool create` fills in): without
    it a deployment's `job_variables.env` would reach no process."""
    if pool_type != "process":
        return {}
    from prefect.workers.process import ProcessWorker

    return dict(ProcessWorker.get_default_base_job_template())


@setup.command("prefect")
def setup_prefect(
    pool: Annotated[str, typer.Option("--pool", help="The work pool deployments run on.")] = DEFAULT_POOL,
    pool_type: Annotated[str, typer.Option("--pool-type", help="Its type when it is created.")] = "process",
) -> None:
    """Create or update the work pool and the `touchflow-send` limit (from touchflow.yaml's rate) on
    the Prefect server of PREFECT_API_URL, and check the SendGrid Secret block. Safe to re-run."""
    from prefect.settings import get_current_settings

    settings = load_settings()
    project = project_or_exit(settings)
    if not get_current_settings().api.url:
        err.print("error: PREFECT_API_URL is not set: point it at the Prefect server to set up", markup=False)
        raise typer.Exit(1)
    try:
        for line in apply(project, pool, pool_type):
            out.print(line, markup=False)
    except Exception as exc:  # the server refused or is gone: say so, no traceback
        err.print(f"error: the Prefect server at {get_current_settings().api.url} refused: {exc}", markup=False)
        raise typer.Exit(1) from None
    block = _block_check(project)
    out.print(f"{block.item}: {block.detail}", markup=False)
    if not block.ok:
        raise typer.Exit(1)
