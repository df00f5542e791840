"""Desired vs observed -> one Decision (pure).

Level-triggered: the decision depends only on the job as stored, its pods and service as they are
now, the clock and the latest training progress, never on which event woke the operator. So a
restarted operator, a repeated event or a lost one all converge to the same state, and re-running
a reconcile never duplicates a pod (creates are by fixed name; the apiserver refuses a second one).
"""

from __future__ import annotations

import copy
import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any

from garfield.observability import termination
from garfield.plan import ClusterDNS, Plan, Replica, make_plan
from garfield.spec import podtemplate
from garfield.spec.kinds import Role
from garfield.spec.model import JobSpec
from garfield.spec.validation import InvalidJob, Job, validate_manifest

from garfield_operator import constants as C
from garfield_operator import rendering
from garfield_operator import status as S
from garfield_operator.observe import PodView, created_replicas, view
from garfield_operator.policies import cleanup, completion, deadline, edits, failure, suspend, ttl

Manifest = dict[str, Any]
Problem = tuple[str, str, str, str]  # (kind, name, reason, problem) of an object that holds the job back


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class PodDeletion:
    name: str
    uid: str
    grace_seconds: int | None = None  # None: the pod's own terminationGracePeriodSeconds


@dataclass(frozen=True)
class StatusTarget:
    """A correct server (peer) whose /status the progress reader polls."""

    pod: str
    ip: str
    port: int


class CaSecret(enum.Enum):
    """The job's CA Secret (mutual TLS) as observed: what certificates may be signed with."""

    OURS = "ours"  # owned by this job: sign with it
    MISSING = "missing"  # none yet: make one (once) before the first certificate
    # A Secret of that name the job does not own (a deleted job's of the same name not yet
    # garbage-collected, or someone else's): never signed with, no pod created until it is gone.
    FOREIGN = "foreign"


# How often a job whose CA Secret name is taken looks again: the operator watches no Secrets, so
# nothing else says when garbage collection removed the other one.
FOREIGN_CA_RECHECK_SECONDS = 2.0


@dataclass
class Observed:
    job: Manifest
    pods: list[Manifest]
    service_exists: bool
    now: dt.datetime
    progress: dict[str, Any] | None = None
    network_policy_exists: bool = True  # the job's own NetworkPolicy (only read when the operator makes them)
    ca_secret: CaSecret = CaSecret.OURS  # the job's CA Secret (only read for jobs with mutual TLS)
    # Pods whose last create the apiserver refused (400/403/422: an invalid pod, an admission
    # plugin, a missing PriorityClass...): pod name -> its message, as the controller recorded it.
    create_failures: dict[str, str] = field(default_factory=dict)


@dataclass
class Decision:
    create_service: Manifest | None = None
    create_network_policy: Manifest | None = None
    create_pods: list[Manifest] = field(default_factory=list)
    # Mutual TLS: the replicas of create_pods that get a fresh key and certificate in their own
    # Secret before their pod is created (so a recreated pod never reuses its predecessor's key).
    # Only which ones: the keys are random, so they are made where the decision is applied.
    issue_certificates: list[Replica] = field(default_factory=list)
    create_ca: bool = False  # make the job's CA and its Secret first (the job has none yet)
    delete_pods: list[PodDeletion] = field(default_factory=list)
    status_patch: dict[str, Any] | None = None
    events: list[Event] = field(default_factory=list)
    delete_job: bool = False
    requeue_after: float | None = None
    phase: str = ""
    progress_targets: list[StatusTarget] = field(default_factory=list)

    def requeue(self, seconds: float | None) -> None:
        if seconds is None:
            return
        seconds = max(seconds, 0.05)
        self.requeue_after = seconds if self.requeue_after is None else min(self.requeue_after, seconds)


def _manifest(job: Manifest) -> Manifest:
    meta = job.get("metadata") or {}
    return {"apiVersion": job.get("apiVersion"), "kind": job.get("kind"),
            "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
            "spec": job.get("spec")}


def _weaker_security(spec: JobSpec) -> list[str]:
    """The security-context weakenings the job's templates asked for (allowWeakerSecurityContext)."""
    out: list[str] = []
    for key, role in (("servers", spec.servers), ("workers", spec.workers)):
        if role is not None:
            out += podtemplate.weakening_messages(f"spec.{key}.template", role.template.pod.to_dict())
    return out


class _Pass:
    """One reconcile pass: the observed state, the status being built and the decision."""

    def __init__(self, obs: Observed, default_image: str, network: rendering.NetworkPolicyOptions | None) -> None:
        self.obs = obs
        self.job = obs.job
        self.meta = obs.job["metadata"]
        self.now = obs.now
        self.prev: S.Status = copy.deepcopy(obs.job.get("status") or {})
        self.st: S.Status = copy.deepcopy(self.prev)
        self.d = Decision()
        self.default_image = default_image
        self.network = network
        self.views: dict[str, PodView] = {}
        self.deleting: set[str] = set()

    # -- helpers ---------------------------------------------------------------------------------
    def cond(self, ctype: str, value: bool, reason: str, message: str) -> bool:
        return S.set_condition(self.st, ctype, value, reason, message, self.now)

    def event(self, etype: str, reason: str, message: str) -> None:
        self.d.events.append(Event(etype, reason, message))

    def delete(self, v: PodView, grace: int | None = None) -> None:
        if v.name not in self.deleting:
            self.deleting.add(v.name)
            self.d.delete_pods.append(PodDeletion(v.name, v.uid, grace))

    def finish(self, phase: str, reason: str, message: str, policy: Any) -> None:
        self.st["phase"] = phase
        self.st["completionTime"] = S.rfc3339(self.now)
        ctype = C.COND_SUCCEEDED if phase == C.SUCCEEDED else C.COND_FAILED
        self.cond(ctype, True, reason, message)
        self.cond(C.COND_RUNNING, False, reason, message)
        if S.get_condition(self.st, C.COND_RESTARTING):
            self.cond(C.COND_RESTARTING, False, reason, message)
        self.event("Normal" if phase == C.SUCCEEDED else "Warning", reason, message)
        self.terminal(policy)

    def terminal(self, policy: Any) -> None:
        for v in cleanup.pods_to_delete(policy.clean_pod_policy, self.views.values()):
            self.delete(v)
        left = ttl.remaining(S.parse_time(self.st.get("completionTime")), policy.ttl_seconds_after_finished, self.now)
        if left is not None and left <= 0:
            self.d.delete_job = True
            self.event("Normal", C.R_TTL_EXPIRED,
                       f"deleting the job {policy.ttl_seconds_after_finished}s after it finished (ttlSecondsAfterFinished)")
        else:
            self.d.requeue(left)

    # -- the pass --------------------------------------------------------------------------------
    def run(self) -> Decision:
        if self.meta.get("deletionTimestamp"):
            return self.d
        job = self.applied() if self.pinned() else self.validate()
        if job is not None:
            self.reconcile(job)
        self.st["observedGeneration"] = self.meta.get("generation")
        self.d.status_patch = S.patch_for(self.prev, self.st)
        self.d.phase = self.st.get("phase") or C.PENDING
        return self.d

    def validate(self) -> Job | None:
        try:
            return validate_manifest(_manifest(self.job), source=f"{self.meta.get('namespace')}/{self.meta.get('name')}")
        except InvalidJob as exc:
            if self.prev.get("phase") in C.TERMINAL_PHASES and not S.is_true(self.prev, C.COND_INVALID):
                return None  # a finished job edited afterwards keeps the outcome it had
            message = "; ".join(exc.errors)
            before = S.get_condition(self.prev, C.COND_INVALID)
            self.cond(C.COND_INVALID, True, C.R_INVALID_SPEC, message)
            self.cond(C.COND_FAILED, True, C.R_INVALID_SPEC, message)
            self.st["phase"] = C.FAILED
            if not (before and before.get("status") == "True" and before.get("message") == message):
                self.event("Warning", C.R_INVALID_SPEC, message)
            return None

    def pinned(self) -> bool:
        """Whether the job has pods of an applied spec that edits must not change (policies/edits.py)."""
        return bool(self.st.get("appliedSpec")) and self.st.get("phase") not in (*C.TERMINAL_PHASES, C.SUSPENDED)

    def applied(self) -> Job | None:
        """The running job as its pods run it: the applied spec with runPolicy as it is now; edits
        of other fields (and an edit that is invalid) are rejected, and said so in a condition."""
        applied = self.st["appliedSpec"]
        source = f"{self.meta.get('namespace')}/{self.meta.get('name')}"
        invalid: str | None = None
        rejected: list[str] = []
        current_job: Job | None = None
        try:  # the current spec as validated (defaults filled in, as the applied one was stored)
            current_job = validate_manifest(_manifest(self.job), source=source)
        except InvalidJob as exc:
            invalid = "; ".join(exc.errors)
        else:
            rejected = edits.rejected_changes(applied, current_job.manifest["spec"])
        if current_job is not None and not rejected:
            job = current_job  # nothing outside the live fields changed: the current spec is what runs
        else:
            try:
                spec = applied if current_job is None else edits.effective_spec(applied, current_job.manifest["spec"])
                job = validate_manifest({**_manifest(self.job), "spec": spec}, source=source)
            except InvalidJob:  # the applied spec no longer validates (an operator of another version): start from now
                self.st.pop("appliedSpec", None)
                return self.validate()
        if invalid:
            self.reject(C.R_INVALID_SPEC, f"the edited spec is invalid and not applied ({invalid}); the job runs on "
                                          "with the spec its pods started with")
        elif rejected:
            self.reject(C.R_CHANGED_WHILE_RUNNING, edits.describe(rejected))
        else:
            self.accept_spec("the job runs with its spec as it is now")
        return job

    def reject(self, reason: str, message: str) -> None:
        before = S.get_condition(self.prev, C.COND_SPEC_CHANGE_REJECTED)
        self.cond(C.COND_SPEC_CHANGE_REJECTED, True, reason, message)
        if not (before and before.get("status") == "True" and before.get("message") == message):
            self.event("Warning", reason, message)

    def accept_spec(self, message: str) -> None:
        """Flip SpecChangeRejected back (a reverted edit, or a suspension that lets the edit apply on resume)."""
        before = S.get_condition(self.st, C.COND_SPEC_CHANGE_REJECTED)
        if before is not None and before.get("status") == "True":
            self.cond(C.COND_SPEC_CHANGE_REJECTED, False, C.R_SPEC_APPLIED, message)
            self.event("Normal", C.R_SPEC_APPLIED, message)

    def reconcile(self, job: Job) -> None:
        spec, policy = job.spec, job.spec.run_policy
        if S.is_true(self.st, C.COND_INVALID):  # fixed by the user: start over
            self.st = {}
            self.cond(C.COND_INVALID, False, C.R_VALID_SPEC, "the spec passes validation")
            self.event("Normal", C.R_VALID_SPEC, "the spec was fixed and passes validation")
        plan = make_plan(job, ClusterDNS(self.meta["namespace"]))
        names = {r.name for r in plan.replicas}
        self.views = {}
        for pod in self.obs.pods:
            v = view(pod)
            if v.name in names:
                self.views[v.name] = v
            elif not v.terminating:
                self.delete(v)  # not part of the plan any more (e.g. replicas lowered)
        phase = self.st.get("phase")

        if phase in C.TERMINAL_PHASES:
            self.terminal(policy)
            return

        if policy.suspend:
            for v in suspend.pods_to_delete(self.views.values()):
                self.delete(v)
            if phase != C.SUSPENDED:
                self.event("Normal", C.R_SUSPENDED, "runPolicy.suspend is true: deleting the job's pods")
            self.st["phase"] = C.SUSPENDED
            self.st["startTime"] = None  # the deadline clock restarts on resume
            self.st.pop("appliedSpec", None)  # no pods left: the resumed job starts from the spec as it is then
            self.accept_spec("the job is suspended: it resumes with its spec as it is then")
            self.st["createdReplicas"] = None  # resumed pods are first pods again, not replacements
            self.cond(C.COND_SUSPENDED, True, C.R_SUSPENDED, "runPolicy.suspend is true")
            self.cond(C.COND_RUNNING, False, C.R_SUSPENDED, "the job is suspended")
            return
        if phase == C.SUSPENDED:
            self.cond(C.COND_SUSPENDED, False, C.R_RESUMED, "runPolicy.suspend is false")
            self.event("Normal", C.R_RESUMED, "runPolicy.suspend is false: recreating the job's pods")

        image = spec.image or self.default_image
        if not self.obs.service_exists:
            self.d.create_service = rendering.render_service(self.job, plan)
        if self.network is not None and not self.obs.network_policy_exists:
            self.d.create_network_policy = rendering.render_network_policy(self.job, plan, self.network)

        start = S.parse_time(self.st.get("startTime"))
        left = deadline.remaining(start, policy.active_deadline_seconds, self.now)
        if left is not None and left <= 0:
            self.finish(C.FAILED, C.R_DEADLINE,
                        f"the job ran longer than runPolicy.activeDeadlineSeconds={policy.active_deadline_seconds}", policy)
            return
        self.d.requeue(left)

        # The replicas that have had a pod (recorded as seen, so a refused create never counts): the
        # rest are not created yet, neither lost nor recreated as replacements.
        created = created_replicas(plan, self.views, self.st.get("createdReplicas") or [])
        self.st["createdReplicas"] = created or None
        outcome = failure.evaluate(plan, self.views, spec, int(self.st.get("restarts") or 0), created,
                                   self.obs.create_failures)
        if outcome.terminal_reason:
            self.finish(C.FAILED, outcome.terminal_reason, outcome.terminal_message, policy)
            return
        counts_failed: dict[str, int] = {}
        for v in outcome.recreate:
            self.delete(v, grace=0)
            key = C.STATUS_KEY.get(v.role, "workers")
            counts_failed[key] = counts_failed.get(key, 0) + 1
            restarts = int(self.st.get("restarts") or 0) + 1
            self.st["restarts"] = restarts
            self.event("Warning", C.R_POD_FAILED,
                       f"pod {v.name} failed ({v.failure}); recreating it (restart {restarts} of "
                       f"backoffLimit {policy.backoff_limit}); {len(outcome.lost.get(v.role, []))} {v.role}s lost, "
                       f"f={spec.tolerated(Role(v.role))} tolerated")

        problems: list[Problem] = [
            ("pod", name, C.R_FAILED_CREATE, f"the apiserver refused to create it: {message}")
            for name, message in sorted(self.obs.create_failures.items()) if name in names and name not in self.views]
        if self.tls_ready(plan, problems):
            self.create_missing(plan, image, set(created), policy.restart_policy)
            # The CA is made once, when the first certificate needs it.
            self.d.create_ca = self.obs.ca_secret is CaSecret.MISSING and bool(self.d.issue_certificates)
        if self.d.create_pods or self.views:  # pods of this spec exist from now on: edits apply only to runPolicy
            self.st["appliedSpec"] = copy.deepcopy(job.manifest["spec"])
        if start is None and self.d.create_pods:
            self.st["startTime"] = S.rfc3339(self.now)
            message = f"created {len(self.d.create_pods)} pods and the headless service {plan.service_name}"
            self.cond(C.COND_CREATED, True, C.R_PODS_CREATED, message)
            self.event("Normal", C.R_PODS_CREATED, message)
            for warning in _weaker_security(spec):
                self.event("Warning", C.R_WEAKER_SECURITY, warning)
            self.d.requeue(policy.active_deadline_seconds)

        statuses = S.replica_statuses(plan, self.views.values(), self.prev)
        for key, n in counts_failed.items():
            statuses[key]["failed"] += n
        for pod in self.d.create_pods:  # created now: Pending, hence active, once this pass applies
            statuses[C.STATUS_KEY[pod["metadata"]["labels"][C.LABEL_ROLE]]]["active"] += 1
        if policy.restart_policy == "Never":
            for key in statuses:
                now_failed = sum(1 for v in self.views.values() if v.failed and C.STATUS_KEY.get(v.role) == key)
                statuses[key]["failed"] = max(statuses[key]["failed"], now_failed)
        self.st["replicaStatuses"] = statuses

        done, message = completion.succeeded(spec, outcome.states)
        if done:
            self.final_progress(plan, spec)
            self.finish(C.SUCCEEDED, C.R_SUCCEEDED, message, policy)
            return

        self.degraded(problems)
        self.set_phase(plan, spec, outcome)
        self.progress(plan, spec)

    def create_missing(self, plan: Plan, image: str, created: set[str], restart_policy: str) -> None:
        """Create the pod of every replica without one; a replica that had a pod gets a replacement."""
        digest = rendering.spec_hash(plan, image)
        for replica in plan.replicas:
            v = self.views.get(replica.name)
            if v is not None and replica.name not in self.deleting:
                continue
            if v is not None and v.terminating:
                continue  # the old pod is still going away; its DELETED event brings us back
            if v is not None and v.failed and restart_policy == "Never":
                continue
            self.d.create_pods.append(
                rendering.render_pod(self.job, plan, replica, image, replacement=replica.name in created,
                                     digest=digest))
            if replica.identity is not None:
                self.d.issue_certificates.append(replica)

    def tls_ready(self, plan: Plan, problems: list[Problem]) -> bool:
        """Whether pods may be created as far as mutual TLS goes: the job's CA Secret is its own or
        not there yet (then made before the first certificate). A CA Secret of another owner stops
        pod creation (a problem in the Degraded condition) and is looked at again shortly."""
        if not any(r.identity is not None for r in plan.replicas):
            return True
        if self.obs.ca_secret is CaSecret.FOREIGN:
            name = rendering.ca_secret_name(self.meta["name"])
            problems.append(("secret", name, C.R_FOREIGN_CA_SECRET,
                             "exists but is not owned by this job (a deleted job's of the same name, not yet "
                             "garbage-collected?); no pod is created until it is gone"))
            self.d.requeue(FOREIGN_CA_RECHECK_SECONDS)
            return False
        return True

    def degraded(self, problems: list[Problem]) -> None:
        """(kind, name, reason, problem) of each stuck pod and of `problems`, in the Degraded condition."""
        stuck = [("pod", v.name, v.problem_reason, v.problem) for v in sorted(self.views.values(), key=lambda v: v.name)
                 if v.problem_reason and v.name not in self.deleting] + problems
        before = S.get_condition(self.prev, C.COND_DEGRADED)
        if stuck:
            reason = stuck[0][2]
            message = "; ".join(f"{name}: {problem}" for _, name, _, problem in stuck)
            self.cond(C.COND_DEGRADED, True, reason, message)
            seen = before.get("message", "") if before and before.get("status") == "True" else ""
            for kind, name, why, problem in stuck:  # one Warning per object and problem, when it first shows up
                if f"{name}: {problem}" not in seen and why != C.R_FAILED_CREATE:  # (the controller posted that one)
                    self.event("Warning", why, f"{kind} {name}: {problem}")
        elif before is not None and before.get("status") == "True":
            self.cond(C.COND_DEGRADED, False, C.R_PODS_HEALTHY, "no pod is stuck")

    def set_phase(self, plan: Plan, spec: Any, outcome: failure.FailureOutcome) -> None:
        short = []
        for role in dict.fromkeys(r.role for r in plan.replicas):
            replicas = plan.by_role(role)
            # A replica that finished training did its part: it counts towards the quorum.
            running = sum(1 for r in replicas if r.name in self.views and r.name not in self.deleting
                          and (self.views[r.name].running or self.views[r.name].succeeded))
            quorum = len(replicas) - spec.tolerated(role)
            if running < quorum:
                short.append(f"{running} of {len(replicas)} {role}s running or done (quorum {quorum})")
        was = self.st.get("phase")
        lost = sum(len(v) for v in outcome.lost.values())
        if not short:
            phase = C.RUNNING
            message = "a quorum of every role is running"
        elif was in (C.RUNNING, C.RESTARTING) or lost:
            phase = C.RESTARTING
            message = "; ".join(short)
        else:
            phase = C.PENDING
            message = "; ".join(short)
        self.st["phase"] = phase
        self.cond(C.COND_RUNNING, phase == C.RUNNING,
                  C.R_QUORUM_RUNNING if phase == C.RUNNING else C.R_WAITING_FOR_QUORUM, message)
        if phase == C.RESTARTING or S.get_condition(self.st, C.COND_RESTARTING):
            self.cond(C.COND_RESTARTING, phase == C.RESTARTING,
                      C.R_POD_RECREATED if phase == C.RESTARTING else C.R_QUORUM_RUNNING, message)
        if phase == C.RUNNING and was != C.RUNNING:
            self.event("Normal", C.R_QUORUM_RUNNING, message)

    def final_progress(self, plan: Plan, spec: Any) -> None:
        """The job's result as status.progress: the finished correct primaries' last status, from their
        containers' termination messages (garfield.observability.termination), since their status
        endpoints are gone by now. Unchanged when none left one (an image that does not write it)."""
        replies = []
        models = []
        for r in plan.by_role(plan.primary_role):
            v = self.views.get(r.name)
            if v is not None and v.succeeded and not r.byzantine:
                parsed = termination.parse(v.final_message)
                if parsed is not None:
                    replies.append(parsed)
                    if isinstance(parsed.get("model"), dict) and isinstance(parsed["model"].get("path"), str):
                        models.append({"replica": r.name, **{k: parsed["model"][k] for k in termination.MODEL_FIELDS
                                                             if k in parsed["model"]}})
        if models:  # where each correct server wrote its final model (spec.output.path, on the user's volume)
            self.st["models"] = models
        final = S.summarize_progress(replies, self.now)
        if final is None:
            return
        progress = dict(self.st.get("progress") or {})
        progress.update(final, totalSteps=spec.training.steps)
        self.st["progress"] = progress

    def progress(self, plan: Plan, spec: Any) -> None:
        total = spec.training.steps
        progress = dict(self.st.get("progress") or {})
        progress["totalSteps"] = total
        if self.obs.progress:
            progress.update(self.obs.progress)
        self.st["progress"] = progress
        if self.st.get("phase") != C.RUNNING:
            return
        role = plan.primary_role
        for r in plan.by_role(role):
            v = self.views.get(r.name)
            if v is not None and v.running and v.pod_ip and not r.byzantine:
                self.d.progress_targets.append(StatusTarget(r.name, v.pod_ip, r.ports["metrics"]))


def decide(obs: Observed, default_image: str, network: rendering.NetworkPolicyOptions | None = None) -> Decision:
    """What to do for one job, given everything observed about it now. `network`: give each job
    its own NetworkPolicy admitting these status readers (None: the operator makes none)."""
    return _Pass(obs, default_image, network).run()
