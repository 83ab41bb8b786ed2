"""What people read of the suite's results: pictures and pages, not checks.

- :mod:`migtest.report.timeline`: one test's migration drawn as an SVG
  timeline, from its metrics; each test draws its own as it ends.
- :mod:`migtest.report.jobpage`: one HTML page for a whole Avocado job
  (``migtest-report JOBDIR``), drawn afterwards from the job's files.

Both work from what a test left on disk (:mod:`migtest.artifacts` names
the files), never from a running QEMU: they import nothing that drives one
(no :mod:`migtest.qmp`, no asyncio), so a copied results directory can be
reported on anywhere.
"""
