"""A run's life and records: its config composed and checked before anything is written
(config, preflight, validation; screen and ranges: the checks made before torch is imported;
suggest: the did-you-mean hints), its dir guarded (run_dir), set up (session), its teacher
found (teacher), and what it leaves: summary.json, or a failed run's record (failed_run)."""
