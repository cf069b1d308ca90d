DETACH previous
