"""The figures contract: what a figure is and how it is judged, recorded and read back.

- `metrics`: the metric table (direction, matrix key, range, label, trivial strategy), benchmark limits;
- `check`: `Check`, built from the table (`judged`, `measured`), and the one text rendering of a bound;
- `paired`, `gates`: paired statistics and the gates against a known-good baseline, with their tolerances;
- `baseline_store`: baseline folders on disk;
- `record_schema`, `record_files`, `record_writer`, `record_reader`: the records (versioned), written and read;
- `artifacts`: data behind the report's pictures.

Suites, plugin, benchmarks and report go through these modules; the report imports nothing else of mmtests.
"""
