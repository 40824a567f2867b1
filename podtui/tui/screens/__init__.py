"""One screen a module; each has its .tcss beside it."""
