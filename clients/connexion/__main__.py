"""``python -m clients.connexion``: serve the sample on CONNEXION_HOST:CONNEXION_PORT."""

from .app import main

main()
