"""Run policies, one file each, as pure functions of the observed job (JobSet's layout)."""
