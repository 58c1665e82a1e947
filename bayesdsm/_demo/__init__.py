"""Package data: the demo survey, ``demo_survey.parquet``, read by :func:`bayesdsm.data.demo_path`.

In the repository the file here is a relative symlink to ``data/demo_survey.parquet`` (where
it is made and described, see ``data/PROVENANCE.md``); building a wheel copies the real file.
"""
