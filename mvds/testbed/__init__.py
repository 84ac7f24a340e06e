"""mvds.testbed: N real daemons in any topology, with per-link conditions,
faults and a verdict (``mvds testbed``; docs/TESTBED.md).

:mod:`~mvds.testbed.scenario` is the scenario format, :mod:`~mvds.testbed.generate`
builds common topologies, :mod:`~mvds.testbed.plan` turns a scenario into a
timed list of appends and faults, :mod:`~mvds.testbed.runner` runs it with
real daemons and :mod:`~mvds.testbed.verdict` judges the outcome.
"""
