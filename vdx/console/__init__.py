"""The auditors' and admins' web console (``vdx console run``)."""
