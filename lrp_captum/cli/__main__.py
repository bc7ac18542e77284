"""``python -m lrp_captum.cli ...`` is ``lrp-captum ...``."""
import sys

from lrp_captum.cli import main

sys.exit(main())
