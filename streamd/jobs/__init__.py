"""Handing media work to workers, behind a small interface (`base.JobQueue`); `local` runs
them as processes on this machine, `worker` is what those processes run."""

from streamd.jobs.base import JobQueue

__all__ = ["JobQueue"]
