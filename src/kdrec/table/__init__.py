"""`kdrec table NAME`: a results table described by ``conf/table/<name>.yaml`` (rows of
overrides, seeds, columns), its missing jobs run as ``kdrec`` subprocesses in parallel workers,
every finished job kept as one small JSON under ``results/<table>/`` and the table rebuilt from
those files (:mod:`kdrec.report.table`)."""
