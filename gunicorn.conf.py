"""gunicorn settings for the provider: ``gunicorn -c gunicorn.conf.py wsgi:app``.

The settings live in the package, :mod:`idp.gunicorn_conf`, so an installed wheel has
them too (``gunicorn -c python:idp.gunicorn_conf idp.wsgi:app``); this file is that
module, for the commands run from the repository.
"""

from idp.gunicorn_conf import *  # noqa: F403 - gunicorn reads the module's names
from idp.gunicorn_conf import child_exit, on_starting  # noqa: F401 - the hooks, explicitly
