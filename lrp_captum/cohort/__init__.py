"""Cohorts: run a per-slide step (by default ``explain_slide``) over many slides on Ray.

Local by default (Ray starts on this machine), a Ray cluster when given its address; one Ray
task per slide; failures recorded per slide; reruns skip finished slides. See docs/cohort.md.
Needs the optional ``cohort`` extra (``pip install 'lrp-captum[cohort]'``) to run; reading a
cohort's table needs only pandas.
"""
from lrp_captum.cohort.lock import CohortLock, CohortLockedError
from lrp_captum.cohort.runner import CohortRayError, CohortResult, run_cohort
from lrp_captum.cohort.slides import CohortInputError, SlideSpec, read_slides
from lrp_captum.cohort.table import CohortTableError, read_cohort_table
from lrp_captum.cohort.tasks import EXPLAIN, SlideTask, explain_task

__all__ = ["CohortLock", "CohortLockedError", "CohortRayError", "CohortResult", "run_cohort", "CohortInputError",
           "SlideSpec", "read_slides", "CohortTableError", "read_cohort_table", "EXPLAIN", "SlideTask",
           "explain_task"]
