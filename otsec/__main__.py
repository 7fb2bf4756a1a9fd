from otsec.cli import entry

entry()
