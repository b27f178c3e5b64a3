"""One module per backend (native, bwrap, firejail, landlock) and what they share
(common); the registry and the choice between them are :mod:`isorun.sandbox.backends`.
Imports nothing: a caller pays only for the backends it loads."""
