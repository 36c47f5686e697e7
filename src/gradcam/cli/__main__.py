"""``python -m gradcam.cli``: the ``gradcam`` command."""

import sys

from gradcam.cli.commands import main

sys.exit(main())
