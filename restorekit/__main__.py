"""``python -m restorekit`` runs the ``restore`` command."""

from restorekit.cli import main

main()
