"""The bundled load tester: bots that play the game over real WebSockets.

``python -m server.bots --help`` runs them (see ``server.bots.runner``);
``python -m server.bots.baseline`` is the bare server they are compared with.
"""
