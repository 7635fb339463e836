"""Pure functions that turn a custom resource into the Kubernetes objects it owns (plain dicts).

No I/O here: the handlers apply what these return, `gonka-operator render` prints it, and the unit
tests assert on it without a cluster.
"""
