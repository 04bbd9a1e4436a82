"""``python -m restorekit.cli`` runs the ``restore`` command (used by torchrun and by the tests)."""

from restorekit.cli import main

main()
