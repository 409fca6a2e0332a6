"""The command line's exit statuses, one place for `resihmr run` (cli.py) and `run --sequence` (sequence_outputs.py):
0 every file written, 1 some file failed, 2 usage error, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM)."""

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143
