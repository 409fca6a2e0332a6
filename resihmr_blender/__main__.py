"""`python -m resihmr_blender ARGS` (see cli.py)."""
import sys

from .cli import main

sys.exit(main())
