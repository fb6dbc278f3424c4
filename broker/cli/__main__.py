"""``python -m broker.cli`` is ``crb``."""

from broker.cli import main

main()
