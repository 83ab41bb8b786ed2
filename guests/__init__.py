"""The committed guest binaries, installed as package data (see README)."""
