"""Jobs: client → normalizer → store, one module per seed job."""

from polytape.jobs.base import JOBS, JobContext, JobResult, resolve_job, run_job

__all__ = ["JOBS", "JobContext", "JobResult", "resolve_job", "run_job"]
