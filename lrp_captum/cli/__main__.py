"""``python -m lrp_captum.cli ...`` is ``lrp-captum ...``."""
import sys

from . import main

sys.exit(main())
