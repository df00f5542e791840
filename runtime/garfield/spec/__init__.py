"""The ByzantineTrainingJob spec: its schema (the CRD), typed model and validation."""

from garfield.spec.model import JobSpec, RoleSpec
from garfield.spec.validation import InvalidJob, Job, load_job, validate_manifest

__all__ = ["InvalidJob", "Job", "JobSpec", "RoleSpec", "load_job", "validate_manifest"]
