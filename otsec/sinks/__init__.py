"""Where documents go: files, the console, and (later) search clusters."""
