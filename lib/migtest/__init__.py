"""migtest: a library for testing QEMU live migration with real QEMU processes.

The layers, from the bottom up:

- :mod:`migtest.artifacts`: the names of the files a test leaves in its
  results, which the report and ``scripts/bench`` read back.
- :mod:`migtest.qmp`: a synchronous facade over the ``qemu.qmp`` client.
- :mod:`migtest.machine`: one QEMU process, its QMP monitor and its console.
- :mod:`migtest.arch`: what each guest architecture needs (one profile each).
- :mod:`migtest.status`: migration statuses, typed as QMP spells them.
- :mod:`migtest.endpoint`: the migration commands of one side.
- :mod:`migtest.transport`: how the migration stream gets from source to
  destination.
- :mod:`migtest.pair`: a source and a destination, migrated.
- :mod:`migtest.checks` (pure logic) and :mod:`migtest.verify` (reading the
  guests): whether the migrated guest is intact.
- :mod:`migtest.metrics`: QEMU's numbers about each migration, over time.
- :mod:`migtest.proxy`: a proxy that damages or cuts the migration stream.
- :mod:`migtest.test`: the Avocado base class the tests in
  ``tests/migration`` stand on.
- :mod:`migtest.report`: for people, from the files ``artifacts`` names: a
  timeline picture per test, and one HTML page per Avocado job
  (``migtest-report JOBDIR``).
"""
