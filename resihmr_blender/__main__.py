"""`python -m resihmr_blender ARGS` (see cli.py)."""
import os
import sys

from .cli import EXIT_INTERRUPTED, EXIT_TERMINATED, main

code = main()
if code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
    # A KeyboardInterrupt raised while a C extension ran Python code marks the interpreter as "killed by Ctrl-C"
    # even though main() caught it, and Python would then exit by re-sending SIGINT to itself (status -2 instead
    # of 130). Everything is written and cleaned up by now: leave with the documented status.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
